"""Stable Diffusion 1.x / 2.x presets: ordered dicts of block classes to copy, edit and build from.

``SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS)`` gives the text-to-image pipeline;
``AUTO_BLOCKS`` runs inpainting when ``mask_image`` is given, image-to-image when ``image`` is, and
text-to-image otherwise; each with a ControlNet when ``control_image`` is given (and a ``controlnet`` component),
and with an IP-Adapter when ``ip_adapter_image`` is (``pipe.loader.load_ip_adapter(...)`` first), or both.
"""

from ..blocks.stable_diffusion import (
    StableDiffusionAutoDenoiseStep,
    StableDiffusionAutoPrepareLatentsStep,
    StableDiffusionAutoSetTimestepsStep,
    StableDiffusionAutoVaeEncoderStep,
    StableDiffusionAutoDecodeStep,
    StableDiffusionDecodeStep,
    StableDiffusionInpaintDecodeStep,
    StableDiffusionDenoiseStep,
    StableDiffusionImg2ImgPrepareLatentsStep,
    StableDiffusionImg2ImgSetTimestepsStep,
    StableDiffusionInpaintDenoiseStep,
    StableDiffusionInpaintPrepareLatentsStep,
    StableDiffusionInpaintSetTimestepsStep,
    StableDiffusionInpaintVaeEncoderStep,
    StableDiffusionInputStep,
    StableDiffusionPrepareLatentsStep,
    StableDiffusionSetTimestepsStep,
    StableDiffusionTextEncoderStep,
    StableDiffusionVaeEncoderStep,
)
from ..blocks.stable_diffusion import (
    StableDiffusionAutoControlNetInputStep,
    StableDiffusionAutoIPAdapterStep,
    StableDiffusionControlNetDenoiseStep,
    StableDiffusionControlNetInputStep,
)
from ..modular_pipelines import InsertableDict

TEXT2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionTextEncoderStep),
    ("input", StableDiffusionInputStep),
    ("set_timesteps", StableDiffusionSetTimestepsStep),
    ("prepare_latents", StableDiffusionPrepareLatentsStep),
    ("denoise", StableDiffusionDenoiseStep),
    ("decode", StableDiffusionDecodeStep),
])

IMAGE2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionTextEncoderStep),
    ("image_encoder", StableDiffusionVaeEncoderStep),
    ("input", StableDiffusionInputStep),
    ("set_timesteps", StableDiffusionImg2ImgSetTimestepsStep),
    ("prepare_latents", StableDiffusionImg2ImgPrepareLatentsStep),
    ("denoise", StableDiffusionDenoiseStep),
    ("decode", StableDiffusionDecodeStep),
])

INPAINT_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionTextEncoderStep),
    ("image_encoder", StableDiffusionInpaintVaeEncoderStep),
    ("input", StableDiffusionInputStep),
    ("set_timesteps", StableDiffusionInpaintSetTimestepsStep),
    ("prepare_latents", StableDiffusionInpaintPrepareLatentsStep),
    ("denoise", StableDiffusionInpaintDenoiseStep),
    ("decode", StableDiffusionInpaintDecodeStep),
])

AUTO_BLOCKS = InsertableDict([
    ("text_encoder", StableDiffusionTextEncoderStep),
    ("ip_adapter", StableDiffusionAutoIPAdapterStep),
    ("image_encoder", StableDiffusionAutoVaeEncoderStep),
    ("input", StableDiffusionInputStep),
    ("set_timesteps", StableDiffusionAutoSetTimestepsStep),
    ("prepare_latents", StableDiffusionAutoPrepareLatentsStep),
    ("controlnet_input", StableDiffusionAutoControlNetInputStep),
    ("denoise", StableDiffusionAutoDenoiseStep),
    ("decode", StableDiffusionAutoDecodeStep),
])

# text-to-image with a ControlNet (load one: pipe.update_components(controlnet=ComponentSpec(...).load()))
CONTROLNET_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
CONTROLNET_BLOCKS.insert("controlnet_input", StableDiffusionControlNetInputStep, list(CONTROLNET_BLOCKS).index("denoise"))
CONTROLNET_BLOCKS["denoise"] = StableDiffusionControlNetDenoiseStep

# text-to-image with an IP-Adapter step first (load one: pipe.loader.load_ip_adapter(...)); it runs when
# ip_adapter_image (or ip_adapter_embeds) is given
IP_ADAPTER_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
IP_ADAPTER_BLOCKS.insert("ip_adapter", StableDiffusionAutoIPAdapterStep, 0)

__all__ = ["TEXT2IMAGE_BLOCKS", "IMAGE2IMAGE_BLOCKS", "INPAINT_BLOCKS", "AUTO_BLOCKS", "CONTROLNET_BLOCKS",
           "IP_ADAPTER_BLOCKS"]
