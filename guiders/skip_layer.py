"""Skip-layer guidance."""

from __future__ import annotations

from typing import Any

from ..components.config import register_to_config
from .perturbations import LayerSkipConfig, config_value, layers_or_configs
from .perturbed import _PerturbedGuidance


class SkipLayerGuidance(_PerturbedGuidance):
    """SLG (Stability AI, SD 3.5, https://github.com/Stability-AI/sd3.5) and STG
    (https://huggingface.co/papers/2411.18664).

    A third branch runs the conditional prediction with some blocks skipped, and
    ``pred = uncond + w (cond - uncond) + s (cond - skipped)``; without CFG
    ``pred = skipped + s (cond - skipped)``. The defaults are Stability AI's for SD 3.5 Medium
    (layers ``[7, 8, 9]`` there).

    Args:
        guidance_scale: ``w``.
        skip_layer_guidance_scale: ``s``.
        skip_layer_guidance_start: Fraction of the steps after which skipping starts (exclusive).
        skip_layer_guidance_stop: Fraction of the steps after which it stops.
        skip_layer_guidance_layers: Block index or indices, each a ``LayerSkipConfig(index, fqn="auto")``
            (whole block skipped); give this or ``skip_layer_config``.
        skip_layer_config: One or more :class:`LayerSkipConfig` (or dicts).
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which CFG starts.
        stop: Fraction of the steps after which CFG stops.
        enabled: False runs only the conditional branch.

    Raises:
        ConfigError: unless exactly one of layers and config is given.
    """

    perturbation_keys = ("skip_layer_guidance_layers", "skip_layer_config")

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        skip_layer_guidance_scale: float = 2.8,
        skip_layer_guidance_start: float = 0.01,
        skip_layer_guidance_stop: float = 0.2,
        skip_layer_guidance_layers: int | list[int] | None = None,
        skip_layer_config: LayerSkipConfig | list[LayerSkipConfig] | dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        configs = layers_or_configs(
            type(self).__name__, "skip_layer_guidance_layers", skip_layer_guidance_layers,
            "skip_layer_config", skip_layer_config, LayerSkipConfig,
        )
        if skip_layer_config is not None:
            self.register_to_config(skip_layer_config=config_value(configs, skip_layer_config))
        self._setup(
            guidance_scale,
            skip_layer_guidance_scale,
            (skip_layer_guidance_start, skip_layer_guidance_stop),
            ("skip_layer_guidance_start", "skip_layer_guidance_stop"),
            configs,
            guidance_rescale,
            use_original_formulation,
        )
