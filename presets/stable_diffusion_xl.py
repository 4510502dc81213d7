"""Stable Diffusion XL presets: ordered dicts of block classes to copy, edit and build from.

``AUTO_BLOCKS`` runs inpainting when ``mask_image`` is given, image-to-image when ``image`` is, and
text-to-image otherwise; each with a ControlNet when ``control_image`` is given (and a ``controlnet`` component),
and with an IP-Adapter when ``ip_adapter_image`` is (``pipe.loader.load_ip_adapter(...)`` first), or both.
"""

from ..blocks.stable_diffusion_xl import (
    StableDiffusionXLAutoDenoiseStep,
    StableDiffusionXLAutoPrepareAdditionalConditioningStep,
    StableDiffusionXLAutoPrepareLatentsStep,
    StableDiffusionXLAutoSetTimestepsStep,
    StableDiffusionXLAutoVaeEncoderStep,
    StableDiffusionXLAutoDecodeStep,
    StableDiffusionXLDecodeStep,
    StableDiffusionXLInpaintDecodeStep,
    StableDiffusionXLDenoiseStep,
    StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep,
    StableDiffusionXLImg2ImgPrepareLatentsStep,
    StableDiffusionXLImg2ImgSetTimestepsStep,
    StableDiffusionXLInpaintDenoiseStep,
    StableDiffusionXLInpaintPrepareLatentsStep,
    StableDiffusionXLInpaintSetTimestepsStep,
    StableDiffusionXLInpaintVaeEncoderStep,
    StableDiffusionXLInputStep,
    StableDiffusionXLPrepareAdditionalConditioningStep,
    StableDiffusionXLPrepareLatentsStep,
    StableDiffusionXLSetTimestepsStep,
    StableDiffusionXLTextEncoderStep,
    StableDiffusionXLVaeEncoderStep,
)
from ..blocks.stable_diffusion_xl import (
    StableDiffusionXLAutoControlNetInputStep,
    StableDiffusionXLAutoIPAdapterStep,
    StableDiffusionXLControlNetDenoiseStep,
    StableDiffusionXLControlNetInputStep,
)
from ..modular_pipelines import InsertableDict

TEXT2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionXLTextEncoderStep),
    ("input", StableDiffusionXLInputStep),
    ("set_timesteps", StableDiffusionXLSetTimestepsStep),
    ("prepare_latents", StableDiffusionXLPrepareLatentsStep),
    ("prepare_add_cond", StableDiffusionXLPrepareAdditionalConditioningStep),
    ("denoise", StableDiffusionXLDenoiseStep),
    ("decode", StableDiffusionXLDecodeStep),
])

IMAGE2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionXLTextEncoderStep),
    ("image_encoder", StableDiffusionXLVaeEncoderStep),
    ("input", StableDiffusionXLInputStep),
    ("set_timesteps", StableDiffusionXLImg2ImgSetTimestepsStep),
    ("prepare_latents", StableDiffusionXLImg2ImgPrepareLatentsStep),
    ("prepare_add_cond", StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep),
    ("denoise", StableDiffusionXLDenoiseStep),
    ("decode", StableDiffusionXLDecodeStep),
])

INPAINT_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionXLTextEncoderStep),
    ("image_encoder", StableDiffusionXLInpaintVaeEncoderStep),
    ("input", StableDiffusionXLInputStep),
    ("set_timesteps", StableDiffusionXLInpaintSetTimestepsStep),
    ("prepare_latents", StableDiffusionXLInpaintPrepareLatentsStep),
    ("prepare_add_cond", StableDiffusionXLImg2ImgPrepareAdditionalConditioningStep),
    ("denoise", StableDiffusionXLInpaintDenoiseStep),
    ("decode", StableDiffusionXLInpaintDecodeStep),
])

AUTO_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionXLTextEncoderStep),
    ("ip_adapter", StableDiffusionXLAutoIPAdapterStep),
    ("image_encoder", StableDiffusionXLAutoVaeEncoderStep),
    ("input", StableDiffusionXLInputStep),
    ("set_timesteps", StableDiffusionXLAutoSetTimestepsStep),
    ("prepare_latents", StableDiffusionXLAutoPrepareLatentsStep),
    ("prepare_add_cond", StableDiffusionXLAutoPrepareAdditionalConditioningStep),
    ("controlnet_input", StableDiffusionXLAutoControlNetInputStep),
    ("denoise", StableDiffusionXLAutoDenoiseStep),
    ("decode", StableDiffusionXLAutoDecodeStep),
])

# text-to-image with a ControlNet (load one: pipe.update_components(controlnet=ComponentSpec(...).load()))
CONTROLNET_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
CONTROLNET_BLOCKS.insert("controlnet_input", StableDiffusionXLControlNetInputStep, list(CONTROLNET_BLOCKS).index("denoise"))
CONTROLNET_BLOCKS["denoise"] = StableDiffusionXLControlNetDenoiseStep

# text-to-image with an IP-Adapter step first (load one: pipe.loader.load_ip_adapter(...)); it runs when
# ip_adapter_image (or ip_adapter_embeds) is given
IP_ADAPTER_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
IP_ADAPTER_BLOCKS.insert("ip_adapter", StableDiffusionXLAutoIPAdapterStep, 0)

__all__ = ["TEXT2IMAGE_BLOCKS", "IMAGE2IMAGE_BLOCKS", "INPAINT_BLOCKS", "AUTO_BLOCKS", "CONTROLNET_BLOCKS",
           "IP_ADAPTER_BLOCKS"]
