"""The quicktour's unconditional pipeline: noise, a loop of UNet2DModel + scheduler step, images."""

from ..blocks.ddpm import DDPMDecodeStep, DDPMDenoiseStep, DDPMPrepareNoiseStep, DDPMSetTimestepsStep
from ..modular_pipelines import InsertableDict

UNCONDITIONAL_BLOCKS = InsertableDict([
    ("set_timesteps", DDPMSetTimestepsStep),
    ("prepare_noise", DDPMPrepareNoiseStep),
    ("denoise", DDPMDenoiseStep),
    ("decode", DDPMDecodeStep),
])

__all__ = ["UNCONDITIONAL_BLOCKS"]
