"""IP-Adapter image prompts for Stable Diffusion XL: the SD step, the same computation (SDXL adapters differ
only in their weights and image encoder, which ``pipe.loader.load_ip_adapter`` loads)."""

from __future__ import annotations

from ...modular_pipelines import AutoPipelineBlocks
from ..stable_diffusion.ip_adapter import StableDiffusionIPAdapterStep


class StableDiffusionXLIPAdapterStep(StableDiffusionIPAdapterStep):
    """Encode ``ip_adapter_image`` (or take ``ip_adapter_embeds``) for the IP-Adapters loaded in the UNet.

    Load the adapters first: ``pipe.loader.load_ip_adapter("h94/IP-Adapter", subfolder="sdxl_models",
    weight_name="ip-adapter_sdxl.bin")`` and optionally ``pipe.loader.set_ip_adapter_scale(0.6)``. Outputs one
    embedding tensor per adapter, already repeated for every image of the batch.
    """

    model_name = "stable-diffusion-xl"


class StableDiffusionXLAutoIPAdapterStep(AutoPipelineBlocks):
    """IP-Adapter: runs when ``ip_adapter_image`` (or precomputed ``ip_adapter_embeds``) is given, else skipped."""

    choices = {
        "ip_adapter": (StableDiffusionXLIPAdapterStep, "ip_adapter_image"),
        "from_embeds": (StableDiffusionXLIPAdapterStep, "ip_adapter_embeds"),
    }
