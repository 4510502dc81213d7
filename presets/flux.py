"""FLUX.1 presets (dev and schnell): ordered dicts of block classes to copy, edit and build from.

``SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS)`` gives the text-to-image pipeline;
``AUTO_BLOCKS`` runs inpainting when ``mask_image`` is given, image-to-image when ``image`` is, and
text-to-image otherwise. ``CONTROLNET_BLOCKS`` is text-to-image with a ``controlnet`` component
(``FluxControlNetModel``) following ``control_image``. The distilled guidance of dev models is the
``guidance_scale`` input (default 3.5); true CFG with a ``negative_prompt`` is the guider's
(``ClassifierFreeGuidance(guidance_scale=...)``, off at its default of 1.0).
"""

from ..blocks.flux import (
    FluxAutoDecodeStep,
    FluxControlNetDenoiseStep,
    FluxControlNetInputStep,
    FluxAutoDenoiseStep,
    FluxAutoPrepareLatentsStep,
    FluxAutoSetTimestepsStep,
    FluxAutoVaeEncoderStep,
    FluxDecodeStep,
    FluxDenoiseStep,
    FluxImg2ImgPrepareLatentsStep,
    FluxImg2ImgSetTimestepsStep,
    FluxInpaintDecodeStep,
    FluxInpaintDenoiseStep,
    FluxInpaintPrepareLatentsStep,
    FluxInpaintVaeEncoderStep,
    FluxInputStep,
    FluxPrepareLatentsStep,
    FluxSetTimestepsStep,
    FluxTextEncoderStep,
    FluxVaeEncoderStep,
)
from ..modular_pipelines import InsertableDict

TEXT2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxSetTimestepsStep),
    ("prepare_latents", FluxPrepareLatentsStep),
    ("denoise", FluxDenoiseStep),
    ("decode", FluxDecodeStep),
])

IMAGE2IMAGE_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("image_encoder", FluxVaeEncoderStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxImg2ImgSetTimestepsStep),
    ("prepare_latents", FluxImg2ImgPrepareLatentsStep),
    ("denoise", FluxDenoiseStep),
    ("decode", FluxDecodeStep),
])

INPAINT_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("image_encoder", FluxInpaintVaeEncoderStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxImg2ImgSetTimestepsStep),
    ("prepare_latents", FluxInpaintPrepareLatentsStep),
    ("denoise", FluxInpaintDenoiseStep),
    ("decode", FluxInpaintDecodeStep),
])

AUTO_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("image_encoder", FluxAutoVaeEncoderStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxAutoSetTimestepsStep),
    ("prepare_latents", FluxAutoPrepareLatentsStep),
    ("denoise", FluxAutoDenoiseStep),
    ("decode", FluxAutoDecodeStep),
])

# the control image is encoded before the noise is drawn (FluxControlNetPipeline's order of draws)
CONTROLNET_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
CONTROLNET_BLOCKS.insert("controlnet_input", FluxControlNetInputStep, list(CONTROLNET_BLOCKS).index("prepare_latents"))
CONTROLNET_BLOCKS["denoise"] = FluxControlNetDenoiseStep

__all__ = ["TEXT2IMAGE_BLOCKS", "IMAGE2IMAGE_BLOCKS", "INPAINT_BLOCKS", "AUTO_BLOCKS", "CONTROLNET_BLOCKS"]
