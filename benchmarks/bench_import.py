"""What ``import diffblocks`` and a preset cost beyond ``import torch``, measured in fresh interpreters.

Target (issue 12): at most 0.5 s beyond torch for ``import diffblocks`` plus the SDXL presets, with nothing
heavy (transformers, the model modules) imported until a component is loaded. Each figure is the median of
several fresh processes; the ratio is against ``import torch`` measured the same way in the same run.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

RUNS = 5
PROBE = """
import sys, time
start = time.perf_counter()
import torch
torch_done = time.perf_counter()
{code}
end = time.perf_counter()
heavy = sorted(m for m in ("transformers", "diffblocks.components.models.unet_2d_condition") if m in sys.modules)
print(torch_done - start, end - torch_done, ",".join(heavy) or "-")
"""
CASES = {
    "import diffblocks": "import diffblocks",
    "+ SD 1.5 presets": "import diffblocks\nfrom diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS",
    "+ SDXL presets": "import diffblocks\nfrom diffblocks.presets.stable_diffusion_xl import TEXT2IMAGE_BLOCKS",
}


def measure(code: str) -> tuple[float, float, str]:
    runs = []
    for _ in range(RUNS):
        out = subprocess.run([sys.executable, "-c", PROBE.format(code=code)], capture_output=True, text=True, check=True)
        torch_s, extra_s, heavy = out.stdout.split()
        runs.append((float(torch_s), float(extra_s), heavy))
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs), runs[-1][2]


def main() -> None:
    print(f"{'case':<20} {'torch':>8} {'beyond torch':>13} {'ratio':>7}  heavy modules imported")
    for name, code in CASES.items():
        torch_s, extra_s, heavy = measure(code)
        print(f"{name:<20} {torch_s:>7.2f}s {extra_s:>12.2f}s {extra_s / torch_s:>7.2f}  {heavy}")
    print("target: at most 0.5 s beyond torch for the SDXL presets, and no heavy module")


if __name__ == "__main__":
    main()
