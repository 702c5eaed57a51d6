rule plot:
    """Training curves, PCKh against threshold, per-joint bars and predicted skeletons."""
    input:
        log="results/train/{experiment}/log.csv",
        scores="results/pckh/{experiment}.json",
        preds="results/predict/{experiment}/preds.mat",
        store=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        curves=report(
            "results/plots/{experiment}/curves.png",
            caption="../report/curves.rst",
            category="Training",
            labels={"experiment": "{experiment}", "plot": "curves"},
        ),
        pckh=report(
            "results/plots/{experiment}/pckh.png",
            caption="../report/pckh.rst",
            category="PCKh",
            labels={"experiment": "{experiment}", "plot": "PCKh vs threshold"},
        ),
        joints=report(
            "results/plots/{experiment}/joints.png",
            caption="../report/joints.rst",
            category="PCKh",
            labels={"experiment": "{experiment}", "plot": "per joint"},
        ),
        skeletons=report(
            "results/plots/{experiment}/skeletons.png",
            caption="../report/skeletons.rst",
            category="Predictions",
            labels={"experiment": "{experiment}", "plot": "skeletons"},
        ),
    log:
        "results/logs/plot/{experiment}.log",
    benchmark:
        "results/benchmarks/plot/{experiment}.tsv"
    params:
        dpi=config["plots"]["dpi"],
        skeleton_count=config["plots"]["skeleton_count"],
    shell:
        "(pose-pipeline plot curves --log {wildcards.experiment}={input.log} --out {output.curves} --dpi {params.dpi}"
        " && pose-pipeline plot pckh --scores {wildcards.experiment}={input.scores} --out {output.pckh} --dpi {params.dpi}"
        " && pose-pipeline plot joints --scores {wildcards.experiment}={input.scores} --out {output.joints}"
        " --dpi {params.dpi}"
        " && pose-pipeline plot skeletons --preds {input.preds} --store {input.store} --out {output.skeletons}"
        " --count {params.skeleton_count} --dpi {params.dpi}) > {log} 2>&1"


rule examples:
    """Best, median and worst validation example drawn on the original images."""
    input:
        preds="results/predict/{experiment}/preds.mat",
        store=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        report(
            "results/plots/{experiment}/examples.png",
            caption="../report/examples.rst",
            category="Predictions",
            labels={"experiment": "{experiment}", "plot": "best / median / worst"},
        ),
    log:
        "results/logs/examples/{experiment}.log",
    benchmark:
        "results/benchmarks/examples/{experiment}.tsv"
    params:
        images=lambda wc: ppc.original_images(config, dataset_of(wc)),
        dpi=config["plots"]["dpi"],
    shell:
        "pose-pipeline plot examples --preds {input.preds} --store {input.store} --images {params.images:q}"
        " --out {output} --dpi {params.dpi} > {log} 2>&1"


rule compare:
    """Every compared experiment's PCKh-vs-threshold curves in one chart, published predictions dashed."""
    input:
        scores=expand(EXPERIMENT_FILES["scores"], experiment=COMPARED),
        references=expand("results/pckh/reference/{dataset}.json", dataset=ppc.reference_datasets(config, COMPARED)),
    output:
        report(
            "results/plots/pckh_all.png",
            caption="../report/pckh_all.rst",
            category="Comparison",
            labels={"plot": "PCKh of every experiment"},
        ),
    log:
        "results/logs/compare/pckh_all.log",
    benchmark:
        "results/benchmarks/compare/pckh_all.tsv"
    params:
        # NAME=PATH pairs for the CLI; experiment and dataset names come from the config
        scores=lambda wc, input: " ".join(f"--scores {n}={p}" for n, p in zip(COMPARED, input.scores)),
        references=lambda wc, input: " ".join(
            f"--reference {d}-published={p}"
            for d, p in zip(ppc.reference_datasets(config, COMPARED), input.references)
        ),
        dpi=config["plots"]["dpi"],
    shell:
        "pose-pipeline plot pckh {params.scores} {params.references} --out {output} --dpi {params.dpi} > {log} 2>&1"
