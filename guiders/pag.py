"""Perturbed-attention guidance."""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

from ..components.config import register_to_config
from .perturbations import LayerSkipConfig, config_value, layers_or_configs
from .perturbed import _PerturbedGuidance

_IDENTITY_ATTENTION = {"skip_attention": False, "skip_attention_scores": True, "skip_ff": False}


class PerturbedAttentionGuidance(_PerturbedGuidance):
    """PAG (Ahn et al. 2024, https://huggingface.co/papers/2403.17377).

    A third branch runs the conditional prediction with the self-attention of some blocks replaced by
    identity attention (the attention matrix is the identity, so the output is the values), and
    ``pred = uncond + w (cond - uncond) + s (cond - perturbed)``; without CFG (``w`` = 1)
    ``pred = perturbed + s (cond - perturbed)``. See also https://huggingface.co/papers/2406.02507.

    Args:
        guidance_scale: ``w``.
        perturbed_guidance_scale: ``s``.
        perturbed_guidance_start: Fraction of the steps after which the perturbed branch starts (exclusive).
        perturbed_guidance_stop: Fraction of the steps after which it stops.
        perturbed_guidance_layers: Block indices (in the ``fqn="auto"`` list: a DiT's ``transformer_blocks``,
            a UNet's ``mid_block.attentions.0.transformer_blocks``); give this or ``perturbed_guidance_config``.
        perturbed_guidance_config: One or more :class:`LayerSkipConfig` (or dicts); they are made identity
            attention (``skip_attention_scores=True``, ``skip_attention=False``, ``skip_ff=False``).
        guidance_rescale: Mix of the std-rescaled prediction.
        use_original_formulation: Use ``cond`` as the base.
        start: Fraction of the steps after which CFG starts.
        stop: Fraction of the steps after which CFG stops.
        enabled: False runs only the conditional branch.

    Raises:
        ConfigError: unless exactly one of layers and config is given.
    """

    perturbation_keys = ("perturbed_guidance_layers", "perturbed_guidance_config")

    @register_to_config
    def __init__(
        self,
        guidance_scale: float = 7.5,
        perturbed_guidance_scale: float = 2.8,
        perturbed_guidance_start: float = 0.01,
        perturbed_guidance_stop: float = 0.2,
        perturbed_guidance_layers: int | list[int] | None = None,
        perturbed_guidance_config: LayerSkipConfig | list[LayerSkipConfig] | dict[str, Any] | None = None,
        guidance_rescale: float = 0.0,
        use_original_formulation: bool = False,
        start: float = 0.0,
        stop: float = 1.0,
        enabled: bool = True,
    ):
        super().__init__(start, stop, enabled)
        name = type(self).__name__
        configs = layers_or_configs(
            name, "perturbed_guidance_layers", perturbed_guidance_layers,
            "perturbed_guidance_config", perturbed_guidance_config, LayerSkipConfig, **_IDENTITY_ATTENTION,
        )
        if any(any(getattr(c, k) != v for k, v in _IDENTITY_ATTENTION.items()) for c in configs):
            warnings.warn(
                f"{name} perturbs attention scores only: using skip_attention=False, skip_attention_scores=True, "
                f"skip_ff=False in perturbed_guidance_config",
                stacklevel=3,
            )
            configs = tuple(dataclasses.replace(c, **_IDENTITY_ATTENTION) for c in configs)
        if perturbed_guidance_config is not None:
            self.register_to_config(perturbed_guidance_config=config_value(configs, perturbed_guidance_config))
        self._setup(
            guidance_scale,
            perturbed_guidance_scale,
            (perturbed_guidance_start, perturbed_guidance_stop),
            ("perturbed_guidance_start", "perturbed_guidance_stop"),
            configs,
            guidance_rescale,
            use_original_formulation,
        )
