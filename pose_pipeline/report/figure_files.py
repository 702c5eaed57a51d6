"""Figures written as PNG: matplotlib headless (Agg), saved atomically, and described.

`describe_panel` tells what a panel shows (lines, bars, points, texts), which every plot
function returns, so that tests check what was drawn and not only that a PNG opens.
"""

from __future__ import annotations

import contextlib

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.colors import to_hex  # noqa: E402

from pose_pipeline.util.atomic import atomic_output  # noqa: E402


@contextlib.contextmanager
def figure(out_png, dpi: int, **subplots):
    """A figure with subplots, saved atomically as PNG on success and always closed."""
    fig, axes = plt.subplots(**subplots)
    try:
        yield fig, axes
        fig.tight_layout()
        with atomic_output(out_png, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight", pad_inches=0.1)
    finally:
        plt.close(fig)


def describe_panel(ax) -> dict:
    """What one panel shows: title, axis labels and y scale; lines (label, x, y, colour as
    hex, line style, marker); bars (height, colour) with the x tick labels; scattered
    points (K,2); texts (annotations included); the shapes of the images drawn."""
    return {
        "title": ax.get_title(),
        "xlabel": ax.get_xlabel(),
        "ylabel": ax.get_ylabel(),
        "yscale": ax.get_yscale(),
        "lines": [
            {
                "label": None if line.get_label().startswith("_") else line.get_label(),
                "x": np.asarray(line.get_xdata(), dtype=np.float64),
                "y": np.asarray(line.get_ydata(), dtype=np.float64),
                "colour": to_hex(line.get_color()),
                "linestyle": line.get_linestyle(),
                "marker": line.get_marker(),
            }
            for line in ax.lines
        ],
        "bars": [
            {"height": float(bar.get_height()), "colour": to_hex(bar.get_facecolor())}
            for container in ax.containers
            for bar in container
        ],
        "xticklabels": [t.get_text() for t in ax.get_xticklabels()] if ax.containers else [],
        "points": np.concatenate(
            [np.asarray(c.get_offsets(), dtype=np.float64).reshape(-1, 2) for c in ax.collections] or [np.zeros((0, 2))]
        ),
        "texts": [t.get_text() for t in ax.texts],
        "images": [tuple(image.get_array().shape) for image in ax.images],
    }


def drawn(fig) -> list[dict]:
    """`describe_panel` of each panel of a figure that shows anything, in grid order."""
    return [
        describe_panel(ax) for ax in fig.axes if ax.lines or ax.containers or ax.collections or ax.texts or ax.images
    ]
