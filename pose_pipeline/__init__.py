"""pose-pipeline: a reproducible Snakemake workflow for 2D single-person pose estimation."""

__version__ = "0.1.0"
