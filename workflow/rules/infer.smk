rule infer:
    """Keypoints (and drawn skeletons) for the people of an image set (config `imagesets`)."""
    input:
        unpack(lambda wc: ppc.infer_inputs(config, wc.experiment, wc.imageset)),
    output:
        keypoints="results/infer/{experiment}/{imageset}/keypoints.json",
        table="results/infer/{experiment}/{imageset}/keypoints.csv",
        skipped="results/infer/{experiment}/{imageset}/skipped.csv",
        drawings=directory("results/infer/{experiment}/{imageset}/drawings"),
    log:
        "results/logs/infer/{experiment}/{imageset}.log",
    benchmark:
        "results/benchmarks/infer/{experiment}/{imageset}.tsv"
    threads: experiment_resource("cpus")
    resources:
        gpu=predict_gpus,
        cpus_per_task=experiment_resource("cpus"),
    params:
        out="results/infer/{experiment}/{imageset}",
        boxes=lambda wc: ppc.boxes_option(config, wc.imageset),
        person_scores=lambda wc: ppc.person_score_options(config, wc.imageset),
        evaluation=lambda wc: config["experiments"][wc.experiment]["evaluation"],
        input_size=lambda wc: config["experiments"][wc.experiment]["training"]["input_size"],
        flip=lambda wc: (
            "--flip-test" if config["experiments"][wc.experiment]["evaluation"]["flip_test"] else "--no-flip-test"
        ),
        canvas=lambda wc: config["datasets"][dataset_of(wc)],  # cut as the training crops were
        device=config["device"],
    shell:
        "pose-pipeline infer --checkpoint {input.model:q} --images {input.images:q} {params.boxes:q}"
        " --out {params.out:q} --draw --input-size {params.input_size:q}"
        " --batch-size {params.evaluation[batch_size]:q} --blur-sigma {params.evaluation[blur_sigma]:q}"
        " {params.flip:q} --canvas-size {params.canvas[canvas_size]:q} --context {params.canvas[context]:q}"
        " {params.person_scores:q} --device {params.device:q} > {log:q} 2>&1"


rule score_infer:
    """OKS AP of an image set's keypoints.json (detector boxes, rescored and OKS-NMSed) against its
    COCO `annotations`: the number SimpleBaseline, HRNet and MMPose report."""
    input:
        keypoints="results/infer/{experiment}/{imageset}/keypoints.json",
        annotations=lambda wc: ppc.imageset_annotations(config, wc.imageset),
    output:
        table="results/infer/{experiment}/{imageset}/oks.csv",
        evaluation="results/infer/{experiment}/{imageset}/oks.json",
    log:
        "results/logs/score_infer/{experiment}/{imageset}.log",
    shell:
        "pose-pipeline score --metric oks --preds {input.keypoints:q} --gt {input.annotations:q}"
        " --out {output.table:q} --per-joint {output.evaluation:q} > {log:q} 2>&1"
