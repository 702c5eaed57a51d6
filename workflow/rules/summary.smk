rule summary:
    """Experiments side by side: dataset, model, parameters, epochs, scores, training time."""
    input:
        **{key: expand(template, experiment=COMPARED) for key, template in EXPERIMENT_FILES.items()},
    output:
        report(
            "results/summary.csv", caption="../report/summary.rst", category="Comparison", labels={"file": "summary"}
        ),
    log:
        "results/logs/summary/summary.log",
    benchmark:
        "results/benchmarks/summary/summary.tsv"
    params:
        experiments=json.dumps(ppc.summary_entries(config, COMPARED, EXPERIMENT_FILES)),
    shell:
        "pose-pipeline summary --experiments {params.experiments:q} --out {output:q} > {log:q} 2>&1"
