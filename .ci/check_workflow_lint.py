"""CI: `snakemake --lint` may report the per-rule software-environment lint and nothing else.

No conda channel or container registry is reachable from the machines this workflow is
tested on, so no rule names an environment it could not test (docs/cluster.md, "Running on a
cluster"); every other lint fails CI. Run from the repository root.
"""

import re
import subprocess
import sys

ALLOWED = "Specify a conda environment or container for each rule."

# Text, parsed: snakemake's command line (9.27) ignores `--lint json` and prints text to stderr.
result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], capture_output=True, text=True)
output = result.stdout + result.stderr
lints = re.findall(r"^\s+\* (.+?):\s*$", output, flags=re.M)
others = sorted({lint for lint in lints if lint != ALLOWED})
if others or (result.returncode != 0 and not lints):
    print(output, file=sys.stderr)
    print(
        f"check_workflow_lint: lints other than the environment one: {others or 'snakemake --lint failed'}",
        file=sys.stderr,
    )
    sys.exit(1)
print(f"snakemake --lint: {len(lints)} per-rule environment lints (expected, see docs/cluster.md), nothing else")
