"""FLUX.1 presets (dev and schnell): ordered dicts of block classes to copy, edit and build from.

``SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS)`` gives the text-to-image pipeline;
``AUTO_BLOCKS`` runs inpainting when ``mask_image`` is given, image-to-image when ``image`` is, and
text-to-image otherwise; each with a ControlNet when ``control_image`` is given, and with an IP-Adapter when
``ip_adapter_image`` is, or both. ``CONTROLNET_BLOCKS`` (and ``CONTROLNET_IMAGE2IMAGE_BLOCKS``,
``CONTROLNET_INPAINT_BLOCKS``) add a ``controlnet`` component (``FluxControlNetModel``) following ``control_image``;
``FILL_BLOCKS`` runs FLUX.1-Fill-dev (``image`` and ``mask_image``; inpainting and outpainting), ``CONTROL_BLOCKS``
FLUX.1 Canny / Depth [dev] (``control_image``: an edge or depth map), ``KONTEXT_BLOCKS`` FLUX.1 Kontext [dev] (an
``image`` to edit, read as context; the output keeps its shape unless ``height`` / ``width`` are given),
``REDUX_BLOCKS`` FLUX.1 Redux (``redux_image``: pictures as the prompt; ``pipe.loader.load_redux(repo)`` first),
``IP_ADAPTER_BLOCKS`` XLabs' IP-Adapters (``ip_adapter_image``; ``pipe.loader.load_ip_adapter(...)`` first).
The distilled guidance of dev models is the
``guidance_scale`` input (default 3.5); true CFG with a ``negative_prompt`` is the guider's
(``ClassifierFreeGuidance(guidance_scale=...)``, off at its default of 1.0).
"""

from ..blocks.flux import (
    FluxAutoControlNetInputStep,
    FluxAutoDecodeStep,
    FluxAutoIPAdapterStep,
    FluxControlNetDenoiseStep,
    FluxControlNetInputStep,
    FluxControlDenoiseStep,
    FluxControlImageStep,
    FluxFillDenoiseStep,
    FluxFillLatentsStep,
    FluxFillSetTimestepsStep,
    FluxInpaintControlNetDenoiseStep,
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
    FluxKontextDenoiseStep,
    FluxKontextImageStep,
    FluxPrepareLatentsStep,
    FluxReduxEncoderStep,
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

# the ControlNet's input step before the image's encoding, as in with_controlnet below: it draws from the generator
AUTO_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("ip_adapter", FluxAutoIPAdapterStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxAutoSetTimestepsStep),
    ("controlnet_input", FluxAutoControlNetInputStep),
    ("image_encoder", FluxAutoVaeEncoderStep),
    ("prepare_latents", FluxAutoPrepareLatentsStep),
    ("denoise", FluxAutoDenoiseStep),
    ("decode", FluxAutoDecodeStep),
])


def with_controlnet(blocks: InsertableDict, denoise) -> InsertableDict:
    """``blocks`` with the ControlNet: its input step after the timesteps and before anything that draws from the
    generator (the image's encoding, the noise), as diffusers' FLUX ControlNet pipelines draw; ``denoise`` loop."""
    blocks = blocks.copy()
    image_encoder = blocks.pop("image_encoder") if "image_encoder" in blocks else None
    blocks.insert("controlnet_input", FluxControlNetInputStep, list(blocks).index("set_timesteps") + 1)
    if image_encoder is not None:
        blocks.insert("image_encoder", image_encoder, list(blocks).index("controlnet_input") + 1)
    blocks["denoise"] = denoise
    return blocks


CONTROLNET_BLOCKS = with_controlnet(TEXT2IMAGE_BLOCKS, FluxControlNetDenoiseStep)
CONTROLNET_IMAGE2IMAGE_BLOCKS = with_controlnet(IMAGE2IMAGE_BLOCKS, FluxControlNetDenoiseStep)
CONTROLNET_INPAINT_BLOCKS = with_controlnet(INPAINT_BLOCKS, FluxInpaintControlNetDenoiseStep)

# FLUX.1-Fill-dev: the masked image and the mask read beside the latents (encoded after the noise is drawn)
FILL_BLOCKS = InsertableDict([
    ("text_encoder", FluxTextEncoderStep),
    ("image_encoder", FluxVaeEncoderStep),
    ("input", FluxInputStep),
    ("set_timesteps", FluxFillSetTimestepsStep),
    ("prepare_latents", FluxImg2ImgPrepareLatentsStep),
    ("fill_latents", FluxFillLatentsStep),
    ("denoise", FluxFillDenoiseStep),
    ("decode", FluxDecodeStep),
])

# FLUX.1 Canny / Depth [dev]: the control image read beside the latents (encoded before the noise is drawn)
CONTROL_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
CONTROL_BLOCKS.insert("control_latents", FluxControlImageStep, list(CONTROL_BLOCKS).index("prepare_latents"))
CONTROL_BLOCKS["denoise"] = FluxControlDenoiseStep

# FLUX.1 Kontext [dev]: the image to edit read as context tokens after the latents' (its size sets the output's)
KONTEXT_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
KONTEXT_BLOCKS.insert("kontext_image", FluxKontextImageStep, list(KONTEXT_BLOCKS).index("set_timesteps"))
KONTEXT_BLOCKS["denoise"] = FluxKontextDenoiseStep

# text-to-image with an IP-Adapter step first (XLabs'; load one: pipe.loader.load_ip_adapter(...)); it runs when
# ip_adapter_image (or ip_adapter_embeds) is given
IP_ADAPTER_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
IP_ADAPTER_BLOCKS.insert("ip_adapter", FluxAutoIPAdapterStep, 0)

# FLUX.1 Redux: the prompt embeddings from pictures (and optionally a prompt), mixed into one prompt
REDUX_BLOCKS = TEXT2IMAGE_BLOCKS.copy()
REDUX_BLOCKS["text_encoder"] = FluxReduxEncoderStep

__all__ = ["TEXT2IMAGE_BLOCKS", "IMAGE2IMAGE_BLOCKS", "INPAINT_BLOCKS", "AUTO_BLOCKS", "CONTROLNET_BLOCKS",
           "CONTROLNET_IMAGE2IMAGE_BLOCKS", "CONTROLNET_INPAINT_BLOCKS", "FILL_BLOCKS", "CONTROL_BLOCKS", "KONTEXT_BLOCKS",
           "REDUX_BLOCKS", "IP_ADAPTER_BLOCKS"]
