"""LoRA on a full-size SD 1.5 UNet (860M parameters, random weights built in code, no download): load time against
diffusers + peft, and the cost of a denoising step with a fused LoRA against no LoRA.

A rank-64 LoRA (kohya-style targets: every attention projection, proj_in / proj_out and the feed-forward layers of
the transformer blocks, 128 layers) is written as a diffusers ``pytorch_lora_weights.safetensors``; both libraries
load it from that file into a float16 UNet with the same weights:

  load  - ``pipe.loader``'s path (``diffblocks.components.lora.load_lora``: read, match every key, inject PEFT
          layers) vs ``diffusers.UNet2DConditionModel.load_lora_adapter``; median of ``--repeats``, each followed
          by an unload, interleaved.
  step  - one UNet forward (batch 2, as with CFG) without LoRA, with the LoRA unfused and fused: the fastest of
          ``--steps`` interleaved rounds; float16 on CUDA when there is one (wall time), else float32 on CPU
          (``--threads``, CPU time of the process) at ``--latent`` size; and the module calls each makes. On a
          GPU a step is mostly such calls: a fused LoRA that kept PEFT's wrappers made 192 more and ran 1.15x
          no LoRA on an H200 (the wrappers now step out of a fused model; on a CPU the step is all arithmetic
          and both showed 1.00).
The ratios printed are measured in the same run.

Usage: python benchmarks/bench_lora.py [--repeats 5] [--steps 3] [--latent 32] [--rank 64]
(needs diffusers, a test-only dependency; about 8 GB of memory and a few minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import references  # noqa: E402  (diffusers, the reference, is imported only under tests/)

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3, block_out_channels=[320, 640, 1280, 1280],
    layers_per_block=2, cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
TARGETS = (".to_q", ".to_k", ".to_v", ".to_out.0", ".proj_in", ".proj_out", ".ff.net.0.proj", ".ff.net.2")


def random_unets(dtype: torch.dtype):
    """diffusers' and our UNet with the same random weights (allocated without the slow default init)."""
    from diffblocks.components.models import UNet2DConditionModel

    with torch.device("meta"):
        theirs = references.unet_class()(**SD15_UNET)
        ours = UNet2DConditionModel(**SD15_UNET)
    theirs = theirs.to_empty(device="cpu").to(dtype)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
        for b in theirs.buffers():
            b.zero_()
    ours = ours.to_empty(device="cpu").to(dtype)
    ours.load_state_dict(theirs.state_dict())
    return theirs.eval(), ours.eval()


def write_lora(unet, rank: int, folder: Path) -> int:
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(1)
    state = {}
    for name, module in unet.named_modules():
        if name.endswith(TARGETS) and isinstance(module, torch.nn.Linear | torch.nn.Conv2d):
            fan_in = module.weight.shape[1]
            down_shape = (rank, *module.weight.shape[1:])
            up_shape = (module.weight.shape[0], rank) + ((1, 1) if module.weight.dim() == 4 else ())
            state[f"unet.{name}.lora_A.weight"] = (torch.randn(down_shape, generator=g) / fan_in ** 0.5).half()
            state[f"unet.{name}.lora_B.weight"] = (torch.randn(up_shape, generator=g) * 0.01).half()
    save_file(state, folder / "pytorch_lora_weights.safetensors")
    return len(state) // 2


def load_times(theirs, ours, folder: Path, repeats: int) -> dict[str, list[float]]:
    from diffblocks.components import lora

    times = {"diffblocks": [], "diffusers": []}
    for _ in range(repeats):
        start = time.perf_counter()
        lora.load_lora({"unet": ours}, str(folder), adapter_name="bench")
        times["diffblocks"].append(time.perf_counter() - start)
        lora.unload(ours)
        start = time.perf_counter()
        theirs.load_lora_adapter(str(folder), weight_name="pytorch_lora_weights.safetensors", prefix="unet",
                                 adapter_name="bench")
        times["diffusers"].append(time.perf_counter() - start)
        theirs.unload_lora()
    return times


def step_times(ours, folder: Path, rounds: int, latent: int) -> dict[str, float]:
    """Fastest UNet step of each variant over ``rounds`` interleaved rounds. The variants are weight-sharing copies
    of one UNet (fusing makes new weight tensors, so the plain copy keeps the original ones)."""
    import copy

    from diffblocks.components import lora

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.float16 if device == "cuda" else torch.float32
    plain = ours.to(device=device, dtype=dtype)
    variants = {"no LoRA": plain}
    for name in ("LoRA, unfused", "LoRA, fused"):
        twin = copy.deepcopy(plain, {id(t): t for t in [*plain.parameters(), *plain.buffers()]})
        lora.load_lora({"unet": twin}, str(folder), adapter_name="bench")
        variants[name] = twin
    lora.fuse(variants["LoRA, fused"])
    g = torch.Generator().manual_seed(2)
    sample = torch.randn(2, 4, latent, latent, generator=g).to(device, dtype)
    text = torch.randn(2, 77, 768, generator=g).to(device, dtype)

    # on a CPU, the process's CPU time: other processes on the machine then barely change what is measured
    clock = time.perf_counter if device == "cuda" else time.process_time

    def step(unet) -> float:
        if device == "cuda":
            torch.cuda.synchronize()
        start = clock()
        with torch.no_grad():
            unet(sample, 500, encoder_hidden_states=text)
        if device == "cuda":
            torch.cuda.synchronize()
        return clock() - start

    calls = {name: module_calls(lambda u=unet: step(u)) for name, unet in variants.items()}
    times = {name: [] for name in variants}
    for round_ in range(rounds + 1):  # round 0 warms up
        for name, unet in variants.items():
            seconds = step(unet)
            if round_:
                times[name].append(seconds)
    return {name: (min(runs), calls[name]) for name, runs in times.items()} | {
        "device": f"{device} {str(dtype).removeprefix('torch.')}"}


def module_calls(run) -> int:
    """How many module forwards ``run`` makes: on a GPU, where the kernels are small next to the Python around
    them, a step costs about in proportion (a fused LoRA should add none)."""
    count = 0

    def hook(module, args):
        nonlocal count
        count += 1

    handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
    try:
        run()
    finally:
        handle.remove()
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=3, help="interleaved rounds of steps; the fastest counts")
    parser.add_argument("--threads", type=int, default=1, help="torch threads on CPU (1: steadier on a busy machine)")
    parser.add_argument("--latent", type=int, default=32, help="latent height/width of the step (64 = 512 px)")
    parser.add_argument("--rank", type=int, default=64)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        torch.set_num_threads(args.threads)
    theirs, ours = random_unets(torch.float16)
    with tempfile.TemporaryDirectory() as tmp:
        layers = write_lora(ours, args.rank, Path(tmp))
        print(f"rank-{args.rank} LoRA on {layers} layers of a full-size SD 1.5 UNet (float16)")
        loads = load_times(theirs, ours, Path(tmp), args.repeats)
        del theirs
        mine, ref = statistics.median(loads["diffblocks"]), statistics.median(loads["diffusers"])
        print(f"load: diffblocks {mine:.3f}s, diffusers {ref:.3f}s (median of {args.repeats}); "
              f"ratio diffblocks / diffusers = {mine / ref:.2f}")
        steps = step_times(ours, Path(tmp), args.steps, args.latent)
    device = steps.pop("device")
    print(f"UNet step ({device}, batch 2, latent {args.latent}x{args.latent}, fastest of {args.steps} interleaved"
          f"{', CPU seconds' if device.startswith('cpu') else ''}):")
    for name, (seconds, calls) in steps.items():
        print(f"  {name:16s} {seconds:.3f}s  ratio to no LoRA = {seconds / steps['no LoRA'][0]:.2f}; "
              f"{calls} module calls ({calls - steps['no LoRA'][1]:+d})")


if __name__ == "__main__":
    main()
