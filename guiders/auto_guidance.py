"""AutoGuidance: guide with a degraded version of the model itself."""

from __future__ import annotations

from typing import Any

from ..components.config import register_to_config
from ..components.errors import ConfigError
from .base import UNCOND, GuidanceBranch
from .cfg import _CFGLike
from .perturbations import LayerSkipConfig, config_value, layers_or_configs


class AutoGuidance(_CFGLike):
    """AutoGuidance (Karras et al. 2024, https://huggingface.co/papers/2406.02507).

    ``pred = bad + w (cond - bad)`` (or ``cond + w (cond - bad)``), where ``bad`` is the prediction of the
    model with some layers skipped or dropped out. As in diffusers, the degraded branch is ``pred_uncond``: it
    gets the negative conditioning and the layer-skip perturbations, so this is CFG against a degraded
    unconditional model.

    Args:
        guidance_scale: ``w``.
        auto_guidance_layers: Block indices to degrade (each a ``LayerSkipConfig(index, fqn="auto",
            dropout=dropout)``); give this or ``auto_guidance_config``.
        auto_guidance_config: One or more :class:`LayerSkipConfig` (or dicts).
        dropout: Dropout probability for ``auto_guidance_layers`` (required with them).
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which guidance starts.
        stop: Fraction of the steps after which guidance stops.
        enabled: False runs only the conditional branch.

    Raises:
        ConfigError: unless exactly one of layers and config is given, or with layers but no dropout.
    """

    perturbation_keys = ("auto_guidance_layers", "auto_guidance_config")

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        auto_guidance_layers: int | list[int] | None = None,
        auto_guidance_config: LayerSkipConfig | list[LayerSkipConfig] | dict[str, Any] | None = None,
        dropout: float | None = None,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        name = type(self).__name__
        per_layer = {} if dropout is None else {"dropout": dropout}
        self.perturbations = layers_or_configs(
            name, "auto_guidance_layers", auto_guidance_layers, "auto_guidance_config", auto_guidance_config,
            LayerSkipConfig, **per_layer,
        )
        if auto_guidance_config is None and dropout is None:
            raise ConfigError(f"{name}: dropout is required with auto_guidance_layers (e.g. dropout=0.1)")
        if auto_guidance_config is not None:
            self.register_to_config(auto_guidance_config=config_value(self.perturbations, auto_guidance_config))
        self.guidance_scale = guidance_scale
        self.dropout = dropout
        self.guidance_rescale = guidance_rescale
        self.use_original_formulation = use_original_formulation

    def _uncond_branch(self) -> GuidanceBranch:
        return GuidanceBranch(UNCOND, False, self.perturbations)
