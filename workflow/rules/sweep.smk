rule sweep_table:
    """One row per point of a sweep: its settings, score, final training loss, images/s and training time."""
    input:
        logs=lambda wc: expand(EXPERIMENT_FILES["log"], experiment=ppc.sweep_experiments(config, wc.sweep)),
        scores=lambda wc: expand(EXPERIMENT_FILES["scores"], experiment=ppc.sweep_experiments(config, wc.sweep)),
    output:
        report(
            "results/sweeps/{sweep}.csv",
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"sweep": "{sweep}", "file": "table"},
        ),
    log:
        "results/logs/sweep_table/{sweep}.log",
    benchmark:
        "results/benchmarks/sweep_table/{sweep}.tsv"
    params:
        points=lambda wc: json.dumps(ppc.sweep_table_entries(config, wc.sweep, EXPERIMENT_FILES)),
    shell:
        "pose-pipeline sweep table --points {params.points:q} --out {output:q} > {log:q} 2>&1"


rule sweep_plot:
    """A sweep's score over its grid: a line for one setting, a heatmap for two, heatmaps side by side beyond."""
    input:
        "results/sweeps/{sweep}.csv",
    output:
        report(
            "results/sweeps/{sweep}.png",
            caption="../report/sweep.rst",
            category="Sweeps",
            labels={"sweep": "{sweep}", "file": "plot"},
        ),
    log:
        "results/logs/sweep_plot/{sweep}.log",
    benchmark:
        "results/benchmarks/sweep_plot/{sweep}.tsv"
    params:
        dpi=config["plots"]["dpi"],
    shell:
        "pose-pipeline sweep plot --table {input:q} --out {output:q} --dpi {params.dpi:q} > {log:q} 2>&1"
