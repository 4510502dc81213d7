"""FLUX.1 memory: the transformer loads as views of the memory-mapped weights file (no copy when the dtype
matches), and the pipeline runs under the manager's model and sequential CPU offload with unchanged images."""

import os

import pytest
import torch
from tiny_flux import tiny_transformer
from tiny_models import build_pipeline

from diffblocks.components import FluxTransformer2DModel
from diffblocks.presets import flux

CALL = dict(num_inference_steps=2, height=32, width=32, max_sequence_length=16, output_type="pt", output="images")


def _mapped_file(address: int) -> str | None:
    """The file backing ``address`` in this process's memory map (None for anonymous memory)."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split("-"))
            if start <= address < end:
                return parts[5] if len(parts) > 5 else None
    return None


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs /proc/self/maps")
def test_transformer_parameters_are_the_mapped_file(tmp_path):
    tiny_transformer(dev=True).save_pretrained(tmp_path)
    weights = str((tmp_path / "diffusion_pytorch_model.safetensors").resolve())
    loaded = FluxTransformer2DModel.from_pretrained(tmp_path)
    assert all(_mapped_file(p.data_ptr()) == weights for p in loaded.parameters())
    half = FluxTransformer2DModel.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and _mapped_file(half.x_embedder.weight.data_ptr()) != weights


def test_model_and_sequential_cpu_offload_keep_the_images(flux_dev_repo):
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, flux_dev_repo)
    plain = pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **CALL)
    pipe.enable_model_cpu_offload(device="cpu", memory_reserve_margin=0)
    hooked = {name for name, c in pipe.components.items() if getattr(c, "_hf_hook", None) is not None}
    assert {"transformer", "vae", "text_encoder", "text_encoder_2"} <= hooked
    assert torch.equal(pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **CALL), plain)
    pipe.components_manager.disable_auto_cpu_offload()
    pipe.enable_sequential_cpu_offload(device="cpu")
    torch.testing.assert_close(pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), **CALL), plain,
                               atol=0, rtol=0)
