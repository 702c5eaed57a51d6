rule predict:
    """Validation predictions in original image pixels (flip test): MATLAB `preds` and CSV."""
    input:
        model="results/train/{experiment}/model.pt",
        store=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        mat="results/predict/{experiment}/preds.mat",
        csv="results/predict/{experiment}/preds.csv",
    log:
        "results/logs/predict/{experiment}.log",
    benchmark:
        "results/benchmarks/predict/{experiment}.tsv"
    threads: experiment_resource("cpus")
    resources:
        gpu=predict_gpus,
        cpus_per_task=experiment_resource("cpus"),
    params:
        evaluation=lambda wc: config["experiments"][wc.experiment]["evaluation"],
        input_size=lambda wc: config["experiments"][wc.experiment]["training"]["input_size"],
        flip=lambda wc: (
            "--flip-test" if config["experiments"][wc.experiment]["evaluation"]["flip_test"] else "--no-flip-test"
        ),
        device=config["device"],
    message:
        FOLLOW_LOG
    shell:
        "pose-pipeline predict --checkpoint {input.model:q} --store {input.store:q}"
        " --out-mat {output.mat:q} --out-csv {output.csv:q} --input-size {params.input_size:q}"
        " --batch-size {params.evaluation[batch_size]:q} --blur-sigma {params.evaluation[blur_sigma]:q}"
        " {params.flip:q} --device {params.device:q} > {log:q} 2>&1"


use rule predict as predict_test with:
    input:
        model="results/train/{experiment}/model.pt",
        store=lambda wc: store_path(dataset_of(wc), "test"),
    output:
        mat="results/predict/{experiment}/test/preds.mat",
        csv="results/predict/{experiment}/test/preds.csv",
    log:
        "results/logs/predict/{experiment}_test.log",
    benchmark:
        "results/benchmarks/predict/{experiment}_test.tsv"


rule mpii_submission:
    """MPII test-set submission: the release's test annolist with each single person's predicted joints."""
    input:
        release=lambda wc: ppc.dataset_sources(config, dataset_of(wc), "test")["annotations"],
        store=lambda wc: store_path(dataset_of(wc), "test"),
        preds="results/predict/{experiment}/test/preds.csv",
    output:
        "results/submission/{experiment}/pred_keypoints_mpii.mat",
    log:
        "results/logs/mpii_submission/{experiment}.log",
    benchmark:
        "results/benchmarks/mpii_submission/{experiment}.tsv"
    shell:
        "pose-pipeline mpii-submission --release {input.release:q} --store {input.store:q} --preds {input.preds:q}"
        " --out {output:q} > {log:q} 2>&1"
