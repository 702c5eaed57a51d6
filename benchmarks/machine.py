"""What every benchmark records of the machine it ran on (the 2-core machines here are Intel
Xeon or AMD EPYC, about 2x apart for PyTorch on a CPU, so each figure names its CPU)."""

from __future__ import annotations

import platform


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform says."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
