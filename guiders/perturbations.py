"""Value objects that describe how a guider degrades the model for one of its branches.

A guider never holds hooks; it lists, per branch, which of these perturbations that branch needs
(:attr:`GuidanceBranch.perturbations`), and :mod:`diffblocks.guiders.hooks` applies them to that branch's
batch rows for the duration of one forward.

Both objects are frozen: a guider that adjusts one (PAG forces identity attention) builds a new one with
:func:`dataclasses.replace` instead of mutating what the user passed in.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence, TypeVar, Union

from ..components.errors import ConfigError


def _as_indices(owner: str, value: Any) -> tuple[int, ...]:
    """``3`` or ``[2, 9]`` as ``(3,)`` / ``(2, 9)``; rejects bools, floats and empty lists."""
    items = [value] if isinstance(value, numbers.Integral) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ConfigError.bad_value(owner, "indices", "an int or a list of ints", value)
    items = list(items)
    if not items or any(isinstance(i, bool) or not isinstance(i, numbers.Integral) for i in items):
        raise ConfigError.bad_value(owner, "indices", "a non-empty int or list of ints", value)
    return tuple(int(i) for i in items)


def _from_mapping(cls, data: Mapping[str, Any]):
    """Build ``cls`` from a dict, ignoring ``_``-prefixed metadata (diffusers writes ``_query_proj_identifiers``)."""
    if not isinstance(data, Mapping):
        raise ConfigError.bad_value(cls.__name__, "from_dict", "a mapping", data)
    fields = {f.name for f in dataclasses.fields(cls)}
    kept = {k: v for k, v in data.items() if not str(k).startswith("_")}
    unknown = sorted(set(kept) - fields)
    if unknown:
        raise ConfigError(f"{cls.__name__}: unknown keys {', '.join(unknown)}; it takes {', '.join(sorted(fields))}")
    return cls(**kept)


@dataclass(frozen=True)
class LayerSkipConfig:
    """Which blocks to degrade and how; one entry of a skip-layer, PAG or AutoGuidance guider.

    Args:
        indices: Index or indices into the module list named by ``fqn`` (negative indices count from the end).
        fqn: Dotted name of a ``ModuleList`` of transformer blocks in the denoiser, e.g.
            ``"mid_block.attentions.0.transformer_blocks"``. ``"auto"`` picks the first that exists of
            ``transformer_blocks``, ``blocks``, ``single_transformer_blocks``, ``layers``,
            ``temporal_transformer_blocks`` (DiTs) and ``mid_block.attentions.0.transformer_blocks`` (UNets).
        skip_attention: Replace each self-attention module's output by its input.
        skip_attention_scores: Replace self-attention by identity attention (output = values), as PAG does.
        skip_ff: Replace each feed-forward module's output by its input. With ``skip_attention`` too, the whole
            block is skipped (its output is its input).
        dropout: Probability of dropping the skipped outputs; ``1.0`` (default) skips them entirely, a smaller
            value runs the layer and applies ``F.dropout`` with this probability instead.

    Raises:
        ConfigError: on empty indices, a dropout outside [0, 1], or incompatible flags.
    """

    indices: tuple[int, ...]
    fqn: str = "auto"
    skip_attention: bool = True
    skip_attention_scores: bool = False
    skip_ff: bool = True
    dropout: float = 1.0

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "indices", _as_indices(name, self.indices))
        if not isinstance(self.fqn, str) or not self.fqn:
            raise ConfigError.bad_value(name, "fqn", "a dotted module name or 'auto'", self.fqn)
        if not 0.0 <= float(self.dropout) <= 1.0:
            raise ConfigError.bad_value(name, "dropout", "a probability in [0, 1]", self.dropout)
        if self.skip_attention and self.skip_attention_scores:
            raise ConfigError(f"{name}: skip_attention and skip_attention_scores cannot both be True; choose one")
        if self.skip_attention_scores and not math.isclose(self.dropout, 1.0):
            raise ConfigError(f"{name}: skip_attention_scores needs dropout=1.0, got dropout={self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (indices as a list)."""
        data = dataclasses.asdict(self)
        data["indices"] = list(self.indices)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "LayerSkipConfig":
        """Inverse of :meth:`to_dict`; also reads dicts written by diffusers."""
        return _from_mapping(cls, data)


@dataclass(frozen=True)
class SmoothedEnergyGuidanceConfig:
    """Blur the self-attention queries of some blocks (Smoothed Energy Guidance).

    Args:
        indices: Index or indices into the module list named by ``fqn``.
        fqn: As for :class:`LayerSkipConfig`.
        blur_sigma: Standard deviation of the Gaussian blur over the token grid. Above ``blur_threshold_inf``
            the blur is infinite: every query becomes the mean query. A guider overrides both with its own
            ``seg_blur_sigma`` / ``seg_blur_threshold_inf``.
        blur_threshold_inf: See ``blur_sigma``.
    """

    indices: tuple[int, ...]
    fqn: str = "auto"
    blur_sigma: float = 9999999.0
    blur_threshold_inf: float = 9999.0

    def __post_init__(self):
        name = type(self).__name__
        object.__setattr__(self, "indices", _as_indices(name, self.indices))
        if not isinstance(self.fqn, str) or not self.fqn:
            raise ConfigError.bad_value(name, "fqn", "a dotted module name or 'auto'", self.fqn)
        if not 0 < float(self.blur_sigma) < math.inf:
            raise ConfigError.bad_value(name, "blur_sigma", "a finite positive number", self.blur_sigma)
        if not math.isfinite(float(self.blur_threshold_inf)):
            raise ConfigError.bad_value(name, "blur_threshold_inf", "a finite number", self.blur_threshold_inf)

    @property
    def is_infinite(self) -> bool:
        return self.blur_sigma > self.blur_threshold_inf

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["indices"] = list(self.indices)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SmoothedEnergyGuidanceConfig":
        return _from_mapping(cls, data)


Perturbation = Union[LayerSkipConfig, SmoothedEnergyGuidanceConfig]
P = TypeVar("P", LayerSkipConfig, SmoothedEnergyGuidanceConfig)


def configs_from(owner: str, key: str, value: Any, cls: type[P]) -> tuple[P, ...]:
    """Normalize a config argument (one object, one dict, or a list of either) to a tuple of ``cls``."""
    items: Sequence[Any] = [value] if isinstance(value, (cls, Mapping)) else value
    if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
        raise ConfigError.bad_value(owner, key, f"a {cls.__name__}, a dict, or a list of them", value)
    out = []
    for item in items:
        if isinstance(item, Mapping):
            item = cls.from_dict(item)
        if not isinstance(item, cls):
            raise ConfigError.bad_value(owner, key, f"a {cls.__name__}, a dict, or a list of them", item)
        out.append(item)
    if not out:
        raise ConfigError.bad_value(owner, key, f"at least one {cls.__name__}", value)
    return tuple(out)


def layers_or_configs(
    owner: str,
    layers_key: str,
    layers: Any,
    config_key: str,
    configs: Any,
    cls: type[P],
    **per_layer: Any,
) -> tuple[P, ...]:
    """Exactly one of ``layers`` (ints, one config each, built with ``per_layer``) or ``configs``."""
    if layers is None and configs is None:
        raise ConfigError(
            f"{owner}: pass {layers_key} (block indices, e.g. [0]) or {config_key} ({cls.__name__}(indices, fqn=...))"
        )
    if layers is not None and configs is not None:
        raise ConfigError(f"{owner}: pass only one of {layers_key} and {config_key}")
    if configs is not None:
        return configs_from(owner, config_key, configs, cls)
    indices = _as_indices(owner, layers)
    return tuple(cls(index, fqn="auto", **per_layer) for index in indices)


def config_value(configs: tuple[P, ...], given: Any) -> Any:
    """What to keep in a guider's config: one object when one was given, else a list."""
    if isinstance(given, (LayerSkipConfig, SmoothedEnergyGuidanceConfig, Mapping)):
        return configs[0]
    return list(configs)
