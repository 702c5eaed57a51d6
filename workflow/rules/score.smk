rule score:
    """PCKh as the reference MPII evaluation, per joint group, to results/pckh/{experiment}.csv."""
    input:
        preds="results/predict/{experiment}/preds.mat",
        gt=lambda wc: store_path(dataset_of(wc), "val"),
    output:
        table=report("results/pckh/{experiment}.csv", category="PCKh", labels={"experiment": "{experiment}", "file": "table"}),
        per_joint="results/pckh/{experiment}.json",
    log:
        "results/logs/score/{experiment}.log",
    benchmark:
        "results/benchmarks/score/{experiment}.tsv"
    shell:
        "pose-pipeline score --preds {input.preds} --gt {input.gt} --out {output.table}"
        " --per-joint {output.per_joint} > {log} 2>&1"
