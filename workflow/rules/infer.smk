import shlex


def infer_inputs(wildcards):
    imageset = config["imagesets"][wildcards.imageset]
    return {"model": f"results/train/{wildcards.experiment}/model.pt", "images": imageset["images"],
            **({"boxes": imageset["boxes"]} if imageset.get("boxes") else {})}


def infer_canvas(wildcards):
    # the experiment's dataset's canvas, so that each person is cut as its training crops were
    return config["datasets"][dataset_of(wildcards)]


rule infer:
    """Keypoints (and drawn skeletons) for the people of an image set (config `imagesets`)."""
    input:
        unpack(infer_inputs),
    output:
        keypoints="results/infer/{experiment}/{imageset}/keypoints.json",
        table="results/infer/{experiment}/{imageset}/keypoints.csv",
        skipped="results/infer/{experiment}/{imageset}/skipped.csv",
        drawings=directory("results/infer/{experiment}/{imageset}/drawings"),
    params:
        out="results/infer/{experiment}/{imageset}",
        boxes=lambda wc, input: f"--boxes {shlex.quote(input.boxes)}" if "boxes" in input.keys() else "",
        evaluation=lambda wc: config["experiments"][wc.experiment]["evaluation"],
        input_size=lambda wc: config["experiments"][wc.experiment]["training"]["input_size"],
        flip=lambda wc: "" if config["experiments"][wc.experiment]["evaluation"]["flip_test"] else "--no-flip-test",
        canvas=infer_canvas,
        device=config["device"],
    threads: experiment_resource("cpus")
    resources:
        gpu=predict_gpus,
        cpus_per_task=experiment_resource("cpus"),
    log:
        "results/logs/infer/{experiment}/{imageset}.log",
    benchmark:
        "results/benchmarks/infer/{experiment}/{imageset}.tsv"
    shell:
        "pose-pipeline infer --checkpoint {input.model} --images {input.images:q} {params.boxes} --out {params.out}"
        " --draw --input-size {params.input_size} --batch-size {params.evaluation[batch_size]}"
        " --blur-sigma {params.evaluation[blur_sigma]} {params.flip} --canvas-size {params.canvas[canvas_size]}"
        " --context {params.canvas[context]} --device {params.device} > {log} 2>&1"
