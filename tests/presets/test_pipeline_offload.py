"""``pipe.enable_model_cpu_offload()`` / ``enable_sequential_cpu_offload()``, the diffusers spellings, on top of
the manager's offload and accelerate's; on CPU the device is the CPU itself, and images must not change."""

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks.presets import stable_diffusion


@pytest.fixture
def pipe(sd_repo):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)


def run(pipe):
    return pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=2, output_type="pt",
                output="images")


def test_model_cpu_offload_hooks_every_model_through_a_manager(pipe):
    plain = run(pipe)
    pipe.enable_model_cpu_offload(device="cpu", memory_reserve_margin=0)
    manager = pipe.components_manager
    assert manager is not None
    hooked = {name for name, c in pipe.components.items() if getattr(c, "_hf_hook", None) is not None}
    assert {"unet", "vae", "text_encoder"} <= hooked
    assert torch.equal(run(pipe), plain)
    manager.disable_auto_cpu_offload()
    assert getattr(pipe.unet, "_hf_hook", None) is None


def test_sequential_cpu_offload_streams_weights(pipe):
    plain = run(pipe)
    pipe.enable_sequential_cpu_offload(device="cpu")
    assert getattr(pipe.unet, "_hf_hook", None) is not None or any(
        getattr(m, "_hf_hook", None) is not None for m in pipe.unet.modules())
    torch.testing.assert_close(run(pipe), plain, atol=0, rtol=0)
