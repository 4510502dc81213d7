"""Apply a branch's perturbations to that branch's batch rows only, for one forward of one call.

The denoiser runs every branch of a guider in one batched forward. :func:`apply_perturbations` turns a plan
(rows, perturbation) into edits of the selected submodules of that model, each of which changes only the
rows of its branch, and makes them active for the calling context only (:mod:`.dispatch`: the model may
be shared by calls running in other threads, which must not see them) until the ``with`` block ends:

- ``skip_attention_scores`` (PAG) and smoothed-energy query blur: a :class:`torch.overrides.TorchFunctionMode`
  is active during the forward of each selected self-attention module and intercepts
  ``F.scaled_dot_product_attention`` (q, k, v of shape ``(B, heads, N, d)``): identity attention sets the
  output rows to the value rows; query blur replaces the query rows before the attention is computed.
- ``skip_attention`` / ``skip_ff``: the output rows of each self-attention / feed-forward module are set to its
  input rows; with both, the whole block's output rows are set to its input rows. With ``dropout < 1`` the
  module runs and ``F.dropout(output, p=dropout)`` is applied to the rows instead (the semantics of diffusers'
  layer-skip hooks).

A model is addressed the diffusers way: ``fqn`` names a ``ModuleList`` of transformer blocks, ``indices`` its
members; self-attention modules are the members' submodules with ``is_cross_attention`` false.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..components.errors import GuiderError
from ..components.errors.base import _did_you_mean
from .dispatch import Edit, FrameMode, activate
from .perturbations import LayerSkipConfig, Perturbation, SmoothedEnergyGuidanceConfig

# Tried in order for fqn="auto": DiT stacks first, then the mid block of a diffusers-layout UNet.
AUTO_FQNS = (
    "transformer_blocks",
    "blocks",
    "single_transformer_blocks",
    "layers",
    "temporal_transformer_blocks",
    "mid_block.attentions.0.transformer_blocks",
)
_FEED_FORWARD_CLASSES = ("FeedForward", "LuminaFeedForward")
_FEED_FORWARD_NAMES = ("ff", "ff_context")


# --- finding the modules -------------------------------------------------------------------------


def _submodule(model: nn.Module, name: str) -> nn.Module | None:
    try:
        return model.get_submodule(name)
    except AttributeError:
        return None


def _module_lists(model: nn.Module) -> list[str]:
    return [n for n, m in model.named_modules() if isinstance(m, nn.ModuleList) and n.endswith(("blocks", "layers"))]


def resolve_fqn(model: nn.Module, fqn: str) -> str:
    """``fqn`` itself, or for ``"auto"`` the first of :data:`AUTO_FQNS` that is a module list of ``model``."""
    if fqn != "auto":
        return fqn
    for candidate in AUTO_FQNS:
        if isinstance(_submodule(model, candidate), nn.ModuleList):
            return candidate
    raise GuiderError(
        f"fqn='auto' found no block list in {type(model).__name__} (tried {', '.join(AUTO_FQNS)}); "
        f"name one with LayerSkipConfig(fqn=...), e.g. one of: {', '.join(_module_lists(model)[:8]) or 'none'}"
    )


def select_blocks(model: nn.Module, fqn: str, indices: Sequence[int]) -> list[tuple[str, nn.Module]]:
    """The ``(dotted name, module)`` of each selected member of the module list ``fqn``."""
    name = resolve_fqn(model, fqn)
    blocks = _submodule(model, name)
    if not isinstance(blocks, (nn.ModuleList, nn.Sequential)):
        lists = _module_lists(model)
        raise GuiderError(f"'{name}' is not a module list of {type(model).__name__}{_did_you_mean(name, lists)}; "
                          f"block lists there: {', '.join(lists[:8]) or 'none'}")
    count = len(blocks)
    bad = [i for i in indices if not -count <= i < count]
    if bad:
        raise GuiderError(f"'{name}' has {count} blocks (indices 0..{count - 1}); got indices {bad}")
    chosen = dict.fromkeys(i % count for i in indices)
    return [(f"{name}.{i}", blocks[i]) for i in chosen]


def self_attentions(name: str, block: nn.Module) -> list[tuple[str, nn.Module]]:
    found = [
        (f"{name}.{n}" if n else name, m)
        for n, m in block.named_modules()
        if hasattr(m, "is_cross_attention") and not m.is_cross_attention
    ]
    if not found:
        raise GuiderError(f"block '{name}' ({type(block).__name__}) has no self-attention module (is_cross_attention=False)")
    return found


def feed_forwards(name: str, block: nn.Module) -> list[tuple[str, nn.Module]]:
    found: list[tuple[str, nn.Module]] = []
    for n, m in block.named_modules():
        leaf = n.rsplit(".", 1)[-1]
        if type(m).__name__ in _FEED_FORWARD_CLASSES or leaf in _FEED_FORWARD_NAMES:
            if not any(n.startswith(prev + ".") for prev, _ in found):
                found.append((n, m))
    if not found:
        raise GuiderError(f"block '{name}' ({type(block).__name__}) has no feed-forward module to skip")
    return [(f"{name}.{n}", m) for n, m in found]


# --- editing rows ----------------------------------------------------------------------------------


def _check_rows(tensor: torch.Tensor, batch: int, where: str) -> None:
    if tensor.shape[0] != batch:
        raise GuiderError(
            f"'{where}' sees a batch of {tensor.shape[0]} rows but the branches' slices cover {batch}; "
            f"guider perturbations need the batch dimension first and unfolded"
        )


def _set_rows(target: torch.Tensor, rows: slice, values: torch.Tensor) -> torch.Tensor:
    out = target.clone()
    out[rows] = values
    return out


def _input(name: str, args: tuple, kwargs: dict) -> torch.Tensor | None:
    if isinstance(kwargs.get(name), torch.Tensor):
        return kwargs[name]
    if name == "hidden_states":
        if isinstance(kwargs.get("x"), torch.Tensor):
            return kwargs["x"]
        if args and isinstance(args[0], torch.Tensor):
            return args[0]
    return None


def _skip_sources(module, output: Any, args: tuple, kwargs: dict, where: str) -> list[torch.Tensor]:
    """The input each output of a skipped module passes on instead: by the module's ``output_streams`` (the input
    name of each output in a tuple, as joint-attention blocks declare them), else by shape, where it is clear."""
    hidden = _input("hidden_states", args, kwargs)
    if hidden is None:
        raise GuiderError("cannot find the hidden_states input of a skipped module")
    outputs = output if isinstance(output, tuple) else (output,)
    streams = getattr(module, "output_streams", None)
    if isinstance(output, tuple) and streams is not None:
        found = [_input(name, args, kwargs) for name in streams]
        missing = [name for name, tensor in zip(streams, found) if tensor is None]
        if missing:
            raise GuiderError(f"cannot skip '{where}': it was called without its {missing[0]} input")
        return found
    inputs = [hidden] + [t for t in (_input("encoder_hidden_states", args, kwargs),) if t is not None]
    sources = []
    for tensor in outputs:
        if not isinstance(tensor, torch.Tensor):
            sources.append(None)
            continue
        matches = [s for s in inputs if s.shape == tensor.shape]
        if not matches:
            raise GuiderError(f"cannot skip '{where}': its output {tuple(tensor.shape)} does not match any input")
        if len({id(m) for m in matches}) > 1 and len(outputs) > 1:
            raise GuiderError(f"cannot skip '{where}': its outputs and its hidden_states and encoder_hidden_states "
                              f"inputs all have the shape {tuple(tensor.shape)}; {type(module).__name__} needs "
                              f"output_streams naming the input each output stands for")
        sources.append(matches[0])
    return sources


def _skip_rows(module, output: Any, args: tuple, kwargs: dict, rows: slice, batch: int, dropout: float,
               where: str) -> Any:
    """``output`` with ``rows`` replaced by the module's input rows (or dropped out when ``dropout < 1``)."""
    full = math.isclose(dropout, 1.0)
    sources = _skip_sources(module, output, args, kwargs, where) if full else None

    def edit(tensor: Any, i: int) -> Any:
        if not isinstance(tensor, torch.Tensor):
            return tensor
        _check_rows(tensor, batch, where)
        if not full:
            return _set_rows(tensor, rows, F.dropout(tensor[rows], p=dropout, training=True))
        return _set_rows(tensor, rows, sources[i][rows].to(tensor.dtype))

    if isinstance(output, tuple):
        return tuple(edit(t, i) for i, t in enumerate(output))
    return edit(output, 0)


@dataclass(frozen=True, eq=False)
class _RowSkip(Edit):
    """The module's output rows become its input rows (or are dropped out when ``dropout < 1``)."""

    rows: slice
    batch: int
    dropout: float
    where: str

    def after(self, module, args, kwargs, output, state):
        return _skip_rows(module, output, args, kwargs, self.rows, self.batch, self.dropout, self.where)


# --- attention edits -------------------------------------------------------------------------------


def _gaussian_kernel(sigma: float, size: int, like: torch.Tensor) -> torch.Tensor:
    half = (size - 1) / 2
    x = torch.linspace(-half, half, steps=size, dtype=torch.float32)
    pdf = torch.exp(-0.5 * (x / sigma) ** 2)
    k1 = (pdf / pdf.sum()).to(like)
    return torch.outer(k1, k1)


def blur_queries(query: torch.Tensor, config: SmoothedEnergyGuidanceConfig, grid: tuple[int, int] | None) -> torch.Tensor:
    """Smooth ``query`` ``(B, heads, N, d)`` over its token grid (SEG, Hong 2024).

    An infinite blur (``blur_sigma > blur_threshold_inf``) makes every query the mean query; otherwise each
    channel is convolved with a Gaussian of ``blur_sigma`` over the ``(h, w)`` grid, reflect-padded, kernel
    size ``ceil(6 sigma)`` rounded up to odd and capped at the grid side.
    """
    b, heads, n, d = query.shape
    if config.is_infinite:
        return query.mean(dim=-2, keepdim=True).expand_as(query)
    h, w = _grid(n, grid)
    x = query.permute(0, 1, 3, 2).reshape(b, heads * d, h, w)
    size = math.ceil(6 * config.blur_sigma) + 1 - math.ceil(6 * config.blur_sigma) % 2
    side = min(h, w)
    size = min(size, side - (side % 2 - 1))
    kernel = _gaussian_kernel(config.blur_sigma, size, x).expand(heads * d, 1, size, size)
    pad = size // 2
    x = F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), kernel, groups=heads * d)
    return x.reshape(b, heads, d, n).permute(0, 1, 3, 2)


def _grid(tokens: int, seen: tuple[int, int] | None) -> tuple[int, int]:
    if seen is not None and seen[0] * seen[1] == tokens:
        return seen
    side = math.isqrt(tokens)
    if side * side == tokens:
        return side, side
    raise GuiderError(
        f"cannot lay {tokens} attention tokens out on a grid for a finite smoothed-energy blur; "
        f"use an infinite blur (seg_blur_sigma above seg_blur_threshold_inf) or a square latent"
    )


def _sdpa_arg(args: list, kwargs: dict, index: int, name: str) -> torch.Tensor:
    return kwargs[name] if name in kwargs else args[index]


class _AttentionRows(FrameMode):
    """Edits the rows of every ``scaled_dot_product_attention`` call made while it is active."""

    def __init__(self, edit: "_RowAttention", grid: tuple[int, int] | None):
        super().__init__()
        self.edit, self.grid = edit, grid
        self.calls = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is not F.scaled_dot_product_attention:
            return func(*args, **kwargs)
        self.calls += 1
        edit, args = self.edit, list(args)
        query = _sdpa_arg(args, kwargs, 0, "query")
        value = _sdpa_arg(args, kwargs, 2, "value")
        _check_rows(query, edit.batch, edit.where)
        if edit.blur is not None:
            blurred = _set_rows(query, edit.rows, blur_queries(query[edit.rows], edit.blur, self.grid))
            if "query" in kwargs:
                kwargs["query"] = blurred
            else:
                args[0] = blurred
        out = func(*args, **kwargs)
        # Identity attention needs as many keys as queries; cross-shaped calls are left alone (as diffusers does).
        if edit.identity and value.shape == out.shape:
            out = _set_rows(out, edit.rows, value[edit.rows])
        return out

    def left(self, module):
        # A forward that never called scaled_dot_product_attention could not be perturbed: an error, not a no-op.
        if self.calls == 0:
            raise GuiderError(
                f"'{self.edit.where}' ({type(module).__name__}) did not call F.scaled_dot_product_attention, so "
                f"its attention cannot be perturbed; give it an SDPA attention processor"
            )


class _GridProbe(Edit):
    """Remembers the ``(h, w)`` of the module's 4-D input (the token grid of a UNet transformer) for this call."""

    def before(self, module, args, kwargs, state):
        x = kwargs.get("hidden_states", args[0] if args else None)
        if isinstance(x, torch.Tensor) and x.ndim == 4:
            state.values[self] = (int(x.shape[-2]), int(x.shape[-1]))


@dataclass(frozen=True, eq=False)
class _RowAttention(Edit):
    """Identity attention and/or query blur on ``rows``, by a mode active during the module's forward."""

    rows: slice
    batch: int
    where: str
    identity: bool = False
    blur: SmoothedEnergyGuidanceConfig | None = None
    probe: _GridProbe | None = None

    def before(self, module, args, kwargs, state):
        state.enter(_AttentionRows(self, state.values.get(self.probe) if self.probe is not None else None))


# --- planning --------------------------------------------------------------------------------------


def _layer_skip_edits(model: nn.Module, rows: slice, config: LayerSkipConfig, batch: int) -> list:
    edits: list = []
    for name, block in select_blocks(model, config.fqn, config.indices):
        if config.skip_attention and config.skip_ff:
            edits.append((block, _RowSkip(rows, batch, config.dropout, name)))
            continue
        if config.skip_attention_scores:
            edits += [(a, _RowAttention(rows, batch, where, identity=True)) for where, a in self_attentions(name, block)]
        elif config.skip_attention:
            edits += [(a, _RowSkip(rows, batch, config.dropout, where)) for where, a in self_attentions(name, block)]
        if config.skip_ff:
            edits += [(ff, _RowSkip(rows, batch, config.dropout, where)) for where, ff in feed_forwards(name, block)]
    return edits


def _query_blur_edits(model: nn.Module, rows: slice, config: SmoothedEnergyGuidanceConfig, batch: int) -> list:
    edits: list = []
    probe = None
    fqn = resolve_fqn(model, config.fqn)
    if not config.is_infinite and "." in fqn:
        probe = _GridProbe()
        edits.append((model.get_submodule(fqn.rsplit(".", 1)[0]), probe))
    for name, block in select_blocks(model, fqn, config.indices):
        for where, attn in self_attentions(name, block):
            edits.append((attn, _RowAttention(rows, batch, where, blur=config, probe=probe)))
    return edits


def perturbation_edits(
    model: nn.Module, rows: slice, perturbation: Perturbation, batch: int
) -> list[tuple[nn.Module, Edit]]:
    """The ``(module, edit)`` pairs that apply ``perturbation`` to ``rows`` of a ``batch``-row forward of ``model``.

    Raises:
        GuiderError: when a block list, index or submodule the perturbation needs is not in ``model``.
    """
    if isinstance(perturbation, LayerSkipConfig):
        return _layer_skip_edits(model, rows, perturbation, batch)
    if isinstance(perturbation, SmoothedEnergyGuidanceConfig):
        return _query_blur_edits(model, rows, perturbation, batch)
    raise GuiderError(f"unknown perturbation {type(perturbation).__name__}")


def rows_covered(slices: Iterable[slice]) -> int:
    """The batch size that ``slices`` describe (their largest stop), after checking each is a plain slice."""
    stops = [0]
    for rows in slices:
        plain = isinstance(rows, slice) and rows.step in (None, 1) and isinstance(rows.start, int)
        if not plain or not isinstance(rows.stop, int) or not 0 <= rows.start < rows.stop:
            raise GuiderError(f"branch rows must be non-empty slices like slice(0, 2), got {rows!r}")
        stops.append(rows.stop)
    return max(stops)


@contextlib.contextmanager
def apply_perturbations(
    model: nn.Module, plan: Sequence[tuple[slice, Perturbation]], batch: int | None = None
) -> Iterator[None]:
    """Apply each ``(rows, perturbation)`` of ``plan`` to ``model`` for the forwards this call runs in the block.

    Only the calling context (this thread, this task) sees the perturbations: other threads may run
    ``model`` at the same time, plain or under their own plans. Every module is found before anything is
    installed; whatever ends the block, nothing of this plan is left behind (see :mod:`.dispatch`).

    Args:
        model: The denoiser (a diffusers-layout UNet or DiT).
        plan: Pairs of batch rows and the perturbation to apply to them.
        batch: Rows in the forward's batch; by default the largest stop of the slices.

    Raises:
        GuiderError: when a block list, index or submodule cannot be found, or a module sees another batch size.
    """
    covered = rows_covered(rows for rows, _ in plan)
    batch = covered if batch is None else batch
    edits: dict[nn.Module, list[Edit]] = {}
    for rows, perturbation in plan:
        for module, edit in perturbation_edits(model, rows, perturbation, batch):
            edits.setdefault(module, []).append(edit)
    if not edits:
        yield
        return
    with activate(edits):
        yield
