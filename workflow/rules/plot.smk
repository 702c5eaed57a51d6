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
        # NAME=PATH words for the CLI, each quoted whole in the shell
        named_log=lambda wc, input: f"{wc.experiment}={input.log}",
        named_scores=lambda wc, input: f"{wc.experiment}={input.scores}",
        dpi=config["plots"]["dpi"],
        skeleton_count=config["plots"]["skeleton_count"],
    shell:
        "(pose-pipeline plot curves --log {params.named_log:q} --out {output.curves:q} --dpi {params.dpi:q}"
        " && pose-pipeline plot pckh --scores {params.named_scores:q} --out {output.pckh:q} --dpi {params.dpi:q}"
        " && pose-pipeline plot joints --scores {params.named_scores:q} --out {output.joints:q}"
        " --dpi {params.dpi:q}"
        " && pose-pipeline plot skeletons --preds {input.preds:q} --store {input.store:q} --out {output.skeletons:q}"
        " --count {params.skeleton_count:q} --dpi {params.dpi:q}) > {log:q} 2>&1"


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
        "pose-pipeline plot examples --preds {input.preds:q} --store {input.store:q} --images {params.images:q}"
        " --out {output:q} --dpi {params.dpi:q} > {log:q} 2>&1"


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
        # Option and NAME=PATH words for the CLI (experiment and dataset names come from the
        # config): lists, which {...:q} quotes word by word
        scores=lambda wc, input: [word for n, p in zip(COMPARED, input.scores) for word in ("--scores", f"{n}={p}")],
        references=lambda wc, input: [
            word
            for d, p in zip(ppc.reference_datasets(config, COMPARED), input.references)
            for word in ("--reference", f"{d}-published={p}")
        ],
        dpi=config["plots"]["dpi"],
    shell:
        "pose-pipeline plot pckh {params.scores:q} {params.references:q} --out {output:q} --dpi {params.dpi:q}"
        " > {log:q} 2>&1"
