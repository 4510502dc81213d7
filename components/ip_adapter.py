"""IP-Adapters in a UNet: install, scale and remove them.

:func:`load_ip_adapters` puts an :class:`~.models.ip_attention.IPAdapterAttnProcessor` on every
cross-attention layer (holding each adapter's ``to_k_ip``/``to_v_ip``), and a
:class:`~.ip_adapter_projection.MultiIPAdapterImageProjection` in ``unet.encoder_hid_proj`` with
``unet.config.encoder_hid_dim_type = "ip_image_proj"``; the UNet then turns ``added_cond_kwargs["image_embeds"]``
(one tensor per adapter) into image tokens for those processors. :func:`unload_ip_adapters` puts back the
processors that were there before and removes the projection.

Cross-attention layers are taken in the order of ``unet.attn_processors`` (diffusers' order), skipping
every ``attn1`` (self-attention); the ``k``-th of them reads the checkpoint's ``ip_adapter`` weights
``"{2k+1}.to_k_ip.weight"`` and ``"{2k+1}.to_v_ip.weight"``.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from .errors import AdapterError, ConfigError, WeightsMismatchError
from .ip_adapter_checkpoint import IPAdapterCheckpoint, build_image_projection, ip_weight_pairs, read_ip_adapter
from .ip_adapter_projection import MultiIPAdapterImageProjection
from .models.attention import Attention, AttnProcessor
from .models.ip_attention import IPAdapterAttnProcessor
from .spec import mark_changed

IP_PROJECTION_TYPE = "ip_image_proj"
_ORIGINALS = "_ip_adapter_original_processors"

__all__ = [
    "IPAdapterCheckpoint", "cross_attention_layers", "ip_adapter_count", "ip_image_projections", "load_ip_adapters",
    "read_ip_adapter", "set_ip_adapter_scale", "unload_ip_adapters",
]


def cross_attention_layers(unet: nn.Module) -> dict[str, Attention]:
    """The attention layers an IP-Adapter attaches to, by module path, in checkpoint order."""
    layers = {}
    for name, module in unet.named_modules():
        if isinstance(module, Attention) and not name.endswith("attn1") and not name.startswith("encoder_hid_proj"):
            layers[name] = module
    return layers


def ip_adapter_count(unet: nn.Module) -> int:
    """How many IP-Adapters are loaded in ``unet`` (0 when none)."""
    projection = getattr(unet, "encoder_hid_proj", None)
    return projection.num_ip_adapters if isinstance(projection, MultiIPAdapterImageProjection) else 0


def ip_image_projections(unet: nn.Module) -> list[nn.Module]:
    """The loaded adapters' projections, in load order (each has ``image_features``: what it reads)."""
    if not ip_adapter_count(unet):
        return []
    return list(unet.encoder_hid_proj.image_projection_layers)


def load_ip_adapters(unet: nn.Module, checkpoints: Sequence[IPAdapterCheckpoint]) -> None:
    """Install ``checkpoints`` (one or more adapters, used together) in ``unet``, replacing any loaded before.

    Every adapter starts at scale 1.0. Weights take the UNet's dtype and device. Nothing changes in the UNet
    when an adapter does not fit.

    Raises:
        AdapterError: an adapter lacks weights for some cross-attention layer of this UNet.
        WeightsMismatchError: weights whose shapes do not fit this UNet's layers.
    """
    if not checkpoints:
        raise AdapterError("load_ip_adapter: no adapter given")
    dtype, device = unet.dtype, unet.device
    layers = cross_attention_layers(unet)
    pairs = [ip_weight_pairs(checkpoint, len(layers)) for checkpoint in checkpoints]
    processors = {name: _processor(name, layer, [p[index] for p in pairs], checkpoints).to(device=device, dtype=dtype)
                  for index, (name, layer) in enumerate(layers.items())}
    projection = MultiIPAdapterImageProjection([build_image_projection(c) for c in checkpoints])
    originals = unet.__dict__.setdefault(_ORIGINALS, {})
    for name, processor in processors.items():
        if not isinstance(layers[name].processor, IPAdapterAttnProcessor):
            originals[name] = layers[name].processor
        layers[name].set_processor(processor)
    _detach_projection(unet)
    unet.encoder_hid_proj = projection.to(device=device, dtype=dtype)
    unet.register_to_config(encoder_hid_dim_type=IP_PROJECTION_TYPE)
    mark_changed(unet)


def _processor(name: str, layer: Attention, weights, checkpoints) -> IPAdapterAttnProcessor:
    """The processor for one layer, holding every adapter's ``(to_k_ip, to_v_ip)`` weights for it."""
    processor = IPAdapterAttnProcessor(layer.to_k.out_features, layer.to_k.in_features, [c.num_tokens for c in checkpoints])
    for adapter, (checkpoint, pair) in enumerate(zip(checkpoints, weights)):
        for linears, weight in zip((processor.to_k_ip, processor.to_v_ip), pair):
            target = linears[adapter].weight
            if weight.shape != target.shape:
                raise WeightsMismatchError.shape(f"IP-Adapter {checkpoint.source} at '{name}'", "to_k_ip/to_v_ip",
                                                 tuple(target.shape), tuple(weight.shape))
            target.data.copy_(weight)
    return processor


def _detach_projection(unet: nn.Module) -> None:
    """Drop an IP projection; keep a text projection (``encoder_hid_dim_type="text_proj"``) aside, still applied."""
    if unet.config.get("encoder_hid_dim_type") == "text_proj" and unet.encoder_hid_proj is not None:
        unet.text_encoder_hid_proj = unet.encoder_hid_proj
    unet.encoder_hid_proj = None


def unload_ip_adapters(unet: nn.Module) -> None:
    """Remove every IP-Adapter: the processors from before :func:`load_ip_adapters` come back, the image
    projection goes, and ``encoder_hid_dim_type`` returns to what it was (None, or ``"text_proj"``)."""
    originals = unet.__dict__.pop(_ORIGINALS, {})
    mark_changed(unet)
    for name, layer in cross_attention_layers(unet).items():
        if isinstance(layer.processor, IPAdapterAttnProcessor):
            original = originals.get(name)
            layer.set_processor(original if original is not None else AttnProcessor())
    text_projection = getattr(unet, "text_encoder_hid_proj", None)
    unet.encoder_hid_proj = text_projection
    if text_projection is not None:
        unet.text_encoder_hid_proj = None
    if unet.config.get("encoder_hid_dim_type") == IP_PROJECTION_TYPE:
        unet.register_to_config(encoder_hid_dim_type="text_proj" if text_projection is not None else None)


# --- scales ----------------------------------------------------------------------------------------


def set_ip_adapter_scale(unet: nn.Module, scale: float | Mapping | Sequence[float | Mapping]) -> None:
    """Set how strongly each adapter acts, everywhere or per transformer layer.

    Args:
        scale: A number for every layer; or a dict ``{"down": ..., "mid": ..., "up": ...}`` where a part is a
            number or ``{"block_<i>": number or [one per transformer layer]}`` (parts and blocks not named get
            0.0), e.g. ``{"down": {"block_2": [0.0, 1.0]}, "up": {"block_0": [0.0, 1.0, 0.0]}}``; or a list of
            those, one per loaded adapter.

    Raises:
        AdapterError: no adapter is loaded, or the list does not have one entry per adapter.
        ConfigError: a dict names a part or block without attention, or gives the wrong number of values.
    """
    processors = {name: layer.processor for name, layer in cross_attention_layers(unet).items()
                  if isinstance(layer.processor, IPAdapterAttnProcessor)}
    if not processors:
        raise AdapterError.no_adapter("set_ip_adapter_scale was called")
    count = len(next(iter(processors.values())).scale)
    configs = list(scale) if isinstance(scale, (list, tuple)) else [scale]
    if len(configs) == 1:
        configs = configs * count
    if len(configs) != count:
        raise AdapterError(f"set_ip_adapter_scale got {len(configs)} scales for {count} loaded IP-Adapters")
    expanded = [expand_scale(unet, config) for config in configs]
    mark_changed(unet)
    for name, processor in processors.items():
        for adapter, config in enumerate(expanded):
            processor.scale[adapter] = config if not isinstance(config, dict) else _layer_scale(config, name)


def _layer_scale(per_block: dict[str, float], layer_name: str) -> float:
    for prefix, value in per_block.items():
        if layer_name.startswith(prefix + "."):
            return value
    return 0.0


def _attention_counts(unet: nn.Module) -> dict[str, dict[int, int]]:
    """Per part, the blocks that have spatial transformers and how many each has."""
    counts = {}
    for part in ("down", "up"):
        blocks = getattr(unet, f"{part}_blocks")
        counts[part] = {i: len(b.attentions) for i, b in enumerate(blocks) if len(getattr(b, "attentions", ()))}
    mid = getattr(unet, "mid_block", None)
    counts["mid"] = {0: 1} if mid is not None and len(getattr(mid, "attentions", ())) else {}
    return counts


def expand_scale(unet: nn.Module, config: Any) -> float | dict[str, float]:
    """A number as it is; a per-block dict as ``{"<part>_blocks.<i>.attentions.<j>": scale}`` for every
    spatial transformer of the UNet (``"mid_block.attentions.0"`` for the middle), 0.0 where not named."""
    if not isinstance(config, Mapping):
        return float(config)
    counts = _attention_counts(unet)
    unknown = sorted(set(config) - {"down", "mid", "up"})
    if unknown:
        raise ConfigError(f"IP-Adapter scale: unknown part(s) {unknown}; use 'down', 'mid' and 'up'")
    layers: dict[str, float] = {}
    mid = config.get("mid", 0.0)
    if isinstance(mid, (list, tuple)):
        if len(mid) != 1:
            raise ConfigError(f"IP-Adapter scale: 'mid' takes one value, got {len(mid)}")
        mid = mid[0]
    if counts["mid"]:
        layers["mid_block.attentions.0"] = float(mid)
    for part in ("down", "up"):
        blocks = counts[part]
        value = config.get(part, 0.0)
        per_block = dict(value) if isinstance(value, Mapping) else {f"block_{i}": value for i in blocks}
        valid = [f"block_{i}" for i in blocks]
        unknown = sorted(set(per_block) - set(valid))
        if unknown:
            raise ConfigError(f"IP-Adapter scale: '{part}' has no attention in {unknown}; blocks with attention: {valid}")
        for i, n in blocks.items():
            values = per_block.get(f"block_{i}", 0.0)
            values = list(values) if isinstance(values, (list, tuple)) else [values]
            values = values * n if len(values) == 1 else values
            if len(values) != n:
                raise ConfigError(f"IP-Adapter scale: {part}.block_{i} has {n} transformer layers, got {len(values)} values")
            layers.update({f"{part}_blocks.{i}.attentions.{j}": float(v) for j, v in enumerate(values)})
    return layers
