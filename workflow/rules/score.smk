rule score:
    """The dataset's metric (MPII PCKh, LSP PCK@0.2 by torso, COCO OKS AP) to results/pckh/{experiment}.csv."""
    input:
        unpack(score_inputs),
    output:
        table=report(
            "results/pckh/{experiment}.csv", category="Scores", labels={"experiment": "{experiment}", "file": "table"}
        ),
        per_joint="results/pckh/{experiment}.json",
    log:
        "results/logs/score/{experiment}.log",
    benchmark:
        "results/benchmarks/score/{experiment}.tsv"
    params:
        annotations=lambda wc, input: ["--annotations", input.annotations] if "annotations" in input.keys() else [],
        oks_sigmas=lambda wc: ppc.oks_sigmas_option(config, dataset_of(wc)),
    shell:
        "pose-pipeline score --preds {input.preds:q} --gt {input.gt:q} --out {output.table:q}"
        " --per-joint {output.per_joint:q} {params.annotations:q} {params.oks_sigmas:q} > {log:q} 2>&1"


rule score_reference:
    """A dataset's published reference predictions scored with PCKh (the dashed curve of pckh_all.png)."""
    input:
        preds=lambda wc: config["datasets"][wc.dataset]["reference_predictions"],
        gt=lambda wc: ppc.reference_ground_truth(config, wc.dataset, store_path(wc.dataset, "val")),
    output:
        table="results/pckh/reference/{dataset}.csv",
        per_joint="results/pckh/reference/{dataset}.json",
    log:
        "results/logs/score_reference/{dataset}.log",
    benchmark:
        "results/benchmarks/score_reference/{dataset}.tsv"
    shell:
        "pose-pipeline score --metric pckh --preds {input.preds:q} --gt {input.gt:q} --out {output.table:q}"
        " --per-joint {output.per_joint:q} > {log:q} 2>&1"
