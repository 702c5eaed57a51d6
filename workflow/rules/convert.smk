rule convert:
    """Annotations + images -> crop-normalised Zarr v3 store of one split."""
    input:
        unpack(convert_inputs),
    output:
        directory("results/stores/{dataset}/{split}.zarr"),
    log:
        "results/logs/convert/{dataset}_{split}.log",
    benchmark:
        "results/benchmarks/convert/{dataset}_{split}.tsv"
    threads: dataset_resource("cpus")
    resources:
        cpus_per_task=dataset_resource("cpus"),
        mem_mb=dataset_resource("mem_mb"),
        runtime=dataset_resource("runtime"),
    params:
        converter=lambda wc: ppc.converter_settings(config, wc.dataset),
        val_split=lambda wc, input: ["--val-split", input.val_split] if "val_split" in input.keys() else [],
        split=lambda wc: ppc.converter_split(config, wc.dataset, wc.split),
    message:
        FOLLOW_LOG
    shell:
        "pose-pipeline convert {params.converter[format]:q} --annotations {input.annotations:q}"
        " --images {input.images:q} {params.val_split:q} --split {params.split:q}"
        " --out {output:q} --dataset {wildcards.dataset:q}"
        " --canvas-size {params.converter[canvas_size]:q} --context {params.converter[context]:q}"
        " --shard-size {params.converter[shard_size]:q} --on-bad-sample {params.converter[on_bad_sample]:q}"
        " {params.converter[extra]:q} --workers {threads:q} > {log:q} 2>&1"
