"""Load time and peak memory of a full-size SD 1.5 UNet (860M parameters, fp16): diffblocks vs diffusers.

Builds the SD 1.5 UNet config with diffusers (random weights), saves it to a temporary folder, then loads it
with ``diffusers.UNet2DConditionModel.from_pretrained`` and ``diffblocks.components.models.UNet2DConditionModel
.from_pretrained``, each in a fresh subprocess, interleaved, a few times (after one warm-up each so both read
from the page cache), and prints medians and the ratios ours / diffusers.

Per load it reports:
  import - seconds to import the library's UNet class (after torch), for context;
  load   - seconds in ``from_pretrained`` (imports excluded);
  +touch - seconds for the load plus reading one value per memory page of every parameter, so lazily mapped
           weights are really read;
  peak   - the process's peak resident memory (VmHWM) after the touch, and that peak minus the resident
           memory after the imports (the memory the load itself costs). File-backed pages of memory-mapped
           weights count as resident, as they do for any process.

Usage: python benchmarks/bench_load_unet.py [--repeats 3] [--dtype float16|float32] [--dir DIR]
(needs diffusers, a test-only dependency; about 2 GB of disk and a couple of minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import references  # noqa: E402  (diffusers, the reference, is imported only under tests/)

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, center_input_sample=False, flip_sin_to_cos=True, freq_shift=0,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    block_out_channels=[320, 640, 1280, 1280], layers_per_block=2, downsample_padding=1, mid_block_scale_factor=1,
    act_fn="silu", norm_num_groups=32, norm_eps=1e-5, cross_attention_dim=768, attention_head_dim=8,
)

CHILD = r"""
import json, sys, time
import torch

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024  # MiB

which, path, dtype = sys.argv[1], sys.argv[2], getattr(torch, sys.argv[3])
t_import = time.perf_counter()
import importlib
UNet2DConditionModel = importlib.import_module(which).UNet2DConditionModel
base = status("VmRSS")
t0 = time.perf_counter()
t_import = t0 - t_import
model = UNet2DConditionModel.from_pretrained(path, torch_dtype=dtype)
t1 = time.perf_counter()
checksum = 0.0
with torch.no_grad():
    for p in model.parameters():
        checksum += float(p.reshape(-1)[:: max(1, 4096 // p.element_size())].float().sum())
t2 = time.perf_counter()
assert model.dtype == dtype
print(json.dumps({"import": t_import, "load": t1 - t0, "touch": t2 - t0, "peak": status("VmHWM"), "base": base, "checksum": checksum}))
"""


def build_checkpoint(directory: Path) -> int:
    """Save an SD 1.5-sized UNet with random fp16 weights via diffusers; returns its parameter count."""
    import torch
    from accelerate import init_empty_weights
    with init_empty_weights():
        model = references.unet_class()(**SD15_UNET)
    gen = torch.Generator().manual_seed(0)
    state = {k: (torch.randn(v.shape, generator=gen) * 0.02).to(torch.float16) for k, v in model.state_dict().items()}
    model.load_state_dict(state, assign=True)
    model.save_pretrained(directory)
    return sum(v.numel() for v in state.values())


def load_once(which: str, path: Path, dtype: str) -> dict:
    module = {"diffusers": "diffusers", "diffblocks": "diffblocks.components.models"}[which]
    out = subprocess.run([sys.executable, "-c", CHILD, module, str(path), dtype], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    parser.add_argument("--dir", type=Path, default=None, help="reuse/keep the checkpoint here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.dir or Path(tmp) / "unet"
        if not (path / "config.json").is_file():
            print(f"building SD 1.5 UNet checkpoint in {path} ...", flush=True)
            print(f"  {build_checkpoint(path) / 1e6:.0f}M parameters", flush=True)
        runs = {"diffusers": [], "diffblocks": []}
        for which in runs:  # warm-up: page cache and bytecode caches
            load_once(which, path, args.dtype)
        for _ in range(args.repeats):
            for which in runs:
                runs[which].append(load_once(which, path, args.dtype))
        report(runs, args.dtype)


def report(runs: dict[str, list[dict]], dtype: str) -> None:
    med = {w: {k: statistics.median(r[k] for r in rs) for k in ("import", "load", "touch", "peak", "base")} for w, rs in runs.items()}
    checks = {w: {round(r["checksum"], 3) for r in rs} for w, rs in runs.items()}
    print(f"\nSD 1.5 UNet, torch_dtype={dtype}, median of {len(runs['diffusers'])} interleaved loads (fresh process each)")
    print(f"{'':12}{'import s':>9}{'load s':>9}{'+touch s':>10}{'peak MiB':>10}{'peak-base':>11}")
    for which, m in med.items():
        print(f"{which:12}{m['import']:9.3f}{m['load']:9.3f}{m['touch']:10.3f}{m['peak']:10.0f}{m['peak'] - m['base']:11.0f}")
    ours, ref = med["diffblocks"], med["diffusers"]
    print(
        f"ratio ours/diffusers: load {ours['load'] / ref['load']:.2f}x, load+touch {ours['touch'] / ref['touch']:.2f}x, "
        f"peak RSS {ours['peak'] / ref['peak']:.2f}x, load memory {(ours['peak'] - ours['base']) / (ref['peak'] - ref['base']):.2f}x"
    )
    print(f"same weights read: {checks['diffusers'] == checks['diffblocks']}")


if __name__ == "__main__":
    main()
