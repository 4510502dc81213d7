"""Smoothed energy guidance."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..components.config import register_to_config
from .perturbations import SmoothedEnergyGuidanceConfig, config_value, layers_or_configs
from .perturbed import _PerturbedGuidance


class SmoothedEnergyGuidance(_PerturbedGuidance):
    """SEG (Hong 2024, https://huggingface.co/papers/2408.00760).

    A third branch runs the conditional prediction with the self-attention queries of some blocks blurred
    over the token grid (Gaussian of ``seg_blur_sigma``; above ``seg_blur_threshold_inf`` every query becomes
    the mean query), which smooths the attention energy landscape; then
    ``pred = uncond + w (cond - uncond) + s (cond - smoothed)``. A finite blur assumes the tokens of each
    attention form the latent's grid (a UNet transformer's input grid, else a square).

    Args:
        guidance_scale: ``w``.
        seg_guidance_scale: ``s``.
        seg_blur_sigma: Blur standard deviation in tokens.
        seg_blur_threshold_inf: Sigma above which the blur is infinite.
        seg_guidance_start: Fraction of the steps after which the blurred branch starts (exclusive).
        seg_guidance_stop: Fraction of the steps after which it stops.
        seg_guidance_layers: Block indices (``fqn="auto"``); give this or ``seg_guidance_config``.
        seg_guidance_config: One or more :class:`SmoothedEnergyGuidanceConfig` (or dicts); their blur is
            set to ``seg_blur_sigma`` / ``seg_blur_threshold_inf``.
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which CFG starts.
        stop: Fraction of the steps after which CFG stops.
        enabled: False runs only the conditional branch.

    Raises:
        ConfigError: unless exactly one of layers and config is given.
    """

    perturbed_name = "pred_cond_seg"
    perturbation_keys = ("seg_guidance_layers", "seg_guidance_config")

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        seg_guidance_scale: float = 2.8,
        seg_blur_sigma: float = 9999999.0,
        seg_blur_threshold_inf: float = 9999.0,
        seg_guidance_start: float = 0.0,
        seg_guidance_stop: float = 1.0,
        seg_guidance_layers: int | list[int] | None = None,
        seg_guidance_config: SmoothedEnergyGuidanceConfig | list[SmoothedEnergyGuidanceConfig] | dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        blur = {"blur_sigma": seg_blur_sigma, "blur_threshold_inf": seg_blur_threshold_inf}
        configs = layers_or_configs(
            type(self).__name__, "seg_guidance_layers", seg_guidance_layers,
            "seg_guidance_config", seg_guidance_config, SmoothedEnergyGuidanceConfig, **blur,
        )
        configs = tuple(dataclasses.replace(c, **blur) for c in configs)
        if seg_guidance_config is not None:
            self.register_to_config(seg_guidance_config=config_value(configs, seg_guidance_config))
        self.seg_blur_sigma = seg_blur_sigma
        self.seg_blur_threshold_inf = seg_blur_threshold_inf
        self._setup(
            guidance_scale,
            seg_guidance_scale,
            (seg_guidance_start, seg_guidance_stop),
            ("seg_guidance_start", "seg_guidance_stop"),
            configs,
            guidance_rescale,
            use_original_formulation,
        )
