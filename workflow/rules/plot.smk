rule plot:
    """Training curves, PCKh against threshold, per-joint bars and predicted skeletons."""
    input:
        log="results/train/{experiment}/log.csv",
        scores="results/pckh/{experiment}.json",
        preds="results/predict/{experiment}/preds.mat",
        store=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        curves=report("results/plots/{experiment}/curves.png", caption="../report/curves.rst", category="Training", labels={"experiment": "{experiment}", "plot": "curves"}),
        pckh=report("results/plots/{experiment}/pckh.png", caption="../report/pckh.rst", category="PCKh", labels={"experiment": "{experiment}", "plot": "PCKh vs threshold"}),
        joints=report("results/plots/{experiment}/joints.png", caption="../report/joints.rst", category="PCKh", labels={"experiment": "{experiment}", "plot": "per joint"}),
        skeletons=report("results/plots/{experiment}/skeletons.png", caption="../report/skeletons.rst", category="Predictions", labels={"experiment": "{experiment}", "plot": "skeletons"}),
    params:
        dpi=config["plots"]["dpi"],
        skeleton_count=config["plots"]["skeleton_count"],
    log:
        "results/logs/plot/{experiment}.log",
    benchmark:
        "results/benchmarks/plot/{experiment}.tsv"
    shell:
        "(pose-pipeline plot curves --log {wildcards.experiment}={input.log} --out {output.curves} --dpi {params.dpi}"
        " && pose-pipeline plot pckh --scores {wildcards.experiment}={input.scores} --out {output.pckh} --dpi {params.dpi}"
        " && pose-pipeline plot joints --scores {input.scores} --out {output.joints} --dpi {params.dpi}"
        " && pose-pipeline plot skeletons --preds {input.preds} --store {input.store} --out {output.skeletons}"
        " --count {params.skeleton_count} --dpi {params.dpi}) > {log} 2>&1"
