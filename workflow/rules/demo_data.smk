rule demo_data:
    """Generate a synthetic dataset in the MPII release format (the built-in demo)."""
    output:
        annotations="results/data/{synthetic}/mpii_release.mat",
        val_split="results/data/{synthetic}/val_split.mat",
        images=directory("results/data/{synthetic}/images"),
    log:
        "results/logs/demo_data/{synthetic}.log",
    benchmark:
        "results/benchmarks/demo_data/{synthetic}.tsv"
    params:
        out=lambda wc: ppc.synthetic_paths(wc.synthetic)["root"],
        synthetic=lambda wc: config["datasets"][wc.synthetic]["synthetic"],
    message:
        FOLLOW_LOG
    shell:
        "pose-pipeline demo-data --out {params.out:q} --seed {params.synthetic[seed]:q}"
        " --train {params.synthetic[train]:q} --val {params.synthetic[val]:q} --test {params.synthetic[test]:q}"
        " --image-size {params.synthetic[image_size]:q} > {log:q} 2>&1"
