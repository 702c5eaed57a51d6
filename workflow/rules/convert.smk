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
        val_split=lambda wc, input: f"--val-split {input.val_split}" if "val_split" in input.keys() else "",
        split=lambda wc: ppc.converter_split(config, wc.dataset, wc.split),
    message:
        FOLLOW_LOG
    shell:
        "pose-pipeline convert {params.converter[format]} --annotations {input.annotations}"
        " --images {input.images} {params.val_split} --split {params.split}"
        " --out {output} --dataset {wildcards.dataset}"
        " --canvas-size {params.converter[canvas_size]} --context {params.converter[context]}"
        " --shard-size {params.converter[shard_size]} --on-bad-sample {params.converter[on_bad_sample]}"
        " {params.converter[extra]} --workers {threads} > {log} 2>&1"
