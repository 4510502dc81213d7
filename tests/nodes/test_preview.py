"""Previews: small images of latents, no VAE decode."""

import torch

from diffblocks.nodes.preview import latents_to_image


def test_previews_unpack_packed_latents_to_their_square_grid():
    packed = torch.randn(1, 16, 64)  # FLUX: a 4x4 grid of 2x2 patches of 16 channels
    assert latents_to_image(packed).size == latents_to_image(torch.randn(1, 16, 8, 8)).size == (64, 64)
    assert latents_to_image(torch.randn(1, 4, 8, 8)).mode == "RGB"


def test_a_vae_fitted_preview_follows_the_decoded_image():
    """On the embedded model (a grey VAE unlike SD's), the preview of a run's final latents in the VAE's own
    fitted colours correlates with the VAE's decode better than the fixed SD 1.x map does."""
    import numpy as np

    from diffblocks import SequentialPipelineBlocks
    from diffblocks.nodes.preview import rgb_map
    from diffblocks.presets import embedded_model_path
    from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS

    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(embedded_model_path())
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    state = pipe(prompt="a handwritten digit seven", num_inference_steps=6, output_type="pt",
                 generator=torch.Generator().manual_seed(0))
    decoded = torch.nn.functional.avg_pool2d(state.get("images").mean(1, keepdim=True), 4).flatten()

    def correlation(image):
        small = torch.from_numpy(np.asarray(image.convert("L").resize((8, 8)), dtype=np.float32)).flatten()
        return torch.corrcoef(torch.stack([small, decoded]))[0, 1].item()

    latents = state.get("latents")
    fitted, fixed = correlation(latents_to_image(latents, pipe.vae)), correlation(latents_to_image(latents))
    assert fitted > 0.7 and fitted > fixed + 0.1, (fitted, fixed)
    assert rgb_map(pipe.vae) is rgb_map(pipe.vae)  # fitted once per VAE


def test_a_vae_under_an_offload_hook_is_not_fitted():
    from diffblocks.components.models import AutoencoderKL
    from diffblocks.nodes.preview import rgb_map
    from diffblocks.presets import embedded_model_path

    vae = AutoencoderKL.from_pretrained(embedded_model_path(), subfolder="vae")
    vae.decoder._hf_hook = object()  # as accelerate's offload leaves it
    assert rgb_map(vae) is None
    assert latents_to_image(torch.randn(1, 4, 8, 8), vae).size == (64, 64)  # the fixed map instead
