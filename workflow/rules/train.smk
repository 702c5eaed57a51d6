rule train:
    """Train an experiment's model; resumes from results/train/{experiment}/checkpoints."""
    input:
        train=lambda wc: store_path(dataset_of(wc), "train"),
        val=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        model="results/train/{experiment}/model.pt",
        log=report(
            "results/train/{experiment}/log.csv",
            category="Training",
            labels={"experiment": "{experiment}", "file": "log"},
        ),
    log:
        "results/logs/train/{experiment}.log",
    benchmark:
        "results/benchmarks/train/{experiment}.tsv"
    threads: experiment_resource("cpus")
    resources:
        gpu=experiment_resource("gpus"),
        cpus_per_task=experiment_resource("cpus"),
        mem_mb=experiment_resource("mem_mb"),
        runtime=experiment_resource("runtime"),
    params:
        settings=lambda wc: ppc.experiment_settings_json(config, wc.experiment),
        out="results/train/{experiment}",
        nproc=nproc_flag,
    message:
        FOLLOW_LOG
    shell:
        "pose-pipeline train --settings {params.settings:q} --train-store {input.train:q}"
        " --val-store {input.val:q} --out {params.out:q} {params.nproc:q} > {log:q} 2>&1"
