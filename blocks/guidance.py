"""One guided model forward: every branch the guider asks for, batched, then combined.

The denoisers of every family call :func:`guided_forward`. Conditioning that differs between the
positive and the negative branch is given as ``{field: (positive, negative)}``; a dotted field such as
``"added_cond_kwargs.text_embeds"`` lands in a nested keyword argument. All branches run as **one**
batched forward (the guider's perturbations touch only their own rows) unless ``split`` is set, when each
branch runs alone (less memory, same numbers), and each process of a guidance-parallel run
(``pipe.enable_guidance_parallel``) runs only some branches.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch


def _stack(branches, value_pair: tuple[Any, Any]) -> Any:
    positive, negative = value_pair
    if positive is None:
        return None
    parts = [positive if b.conditional else (negative if negative is not None else positive) for b in branches]
    if isinstance(positive, (list, tuple)):  # e.g. one image-embedding tensor per IP-Adapter
        return [torch.cat(items) if len(items) > 1 else items[0] for items in zip(*parts)]
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        head, _, tail = key.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[key] = value
    return nested


def _repeat(value: Any, times: int) -> Any:
    if times == 1 or not isinstance(value, torch.Tensor):
        return value
    return torch.cat([value] * times)


def guided_forward(
    guider,
    model: Callable,
    sample: torch.Tensor,
    timestep: Any,
    conditioning: Mapping[str, tuple[Any, Any]],
    shared: Mapping[str, Any] | None = None,
    split: bool = False,
    forward: Callable | None = None,
    parallel: Any = None,
) -> torch.Tensor:
    """The guided prediction for ``sample`` at ``timestep``.

    Args:
        guider: a :class:`~diffblocks.guiders.BaseGuidance` whose ``set_state`` was called for this step.
        model: called as ``model(sample, timestep, **kwargs)``; returns a tensor or an object with ``.sample``.
        sample: the (scaled) model input for one branch, batch ``B``.
        conditioning: per-branch inputs as ``(positive, negative)`` pairs (negative None: reuse positive).
        shared: inputs identical for every branch (``timestep_cond``, ``cross_attention_kwargs``, ...);
            tensors with batch ``B`` are repeated per branch.
        split: run each branch as its own forward instead of one batched forward.
        forward: called instead of ``model`` (e.g. ControlNet then UNet), with the extra keyword
            ``branches`` (the branches in this batch, in row order); perturbations still go on ``model``.
        parallel: shares the branches out among processes (``pipe.enable_guidance_parallel``): called as
            ``parallel.run(branches, run, device)``, where ``run(some_branches)`` runs their forward here and
            returns their predictions by name; returns every branch's prediction.
    """
    shared = dict(shared or {})

    def run(branches) -> dict[str, torch.Tensor]:
        preds: dict[str, torch.Tensor] = {}
        for batch in ([b] for b in branches) if split else [branches]:
            preds.update(_run(guider, model, forward, batch, sample, timestep, conditioning, shared))
        return preds

    branches = guider.branches
    preds = run(branches) if parallel is None else parallel.run(branches, run, sample.device)
    return guider.combine(preds).pred


def _run(guider, model, forward, branches, sample, timestep, conditioning, shared) -> dict[str, torch.Tensor]:
    batch = sample.shape[0]
    n = len(branches)
    slices = {b.name: slice(i * batch, (i + 1) * batch) for i, b in enumerate(branches)}
    kwargs = {k: _stack(branches, pair) for k, pair in conditioning.items()}
    kwargs.update({k: _repeat(v, n) if isinstance(v, torch.Tensor) and v.shape[:1] == (batch,) else v
                   for k, v in shared.items()})
    kwargs = _nest(kwargs)
    if forward is not None:
        kwargs["branches"] = branches
    with guider.perturb(model, slices):
        out = (forward or model)(_repeat(sample, n), timestep, **kwargs)
    out = out.sample if hasattr(out, "sample") else out[0] if isinstance(out, tuple) else out
    return {name: out[rows] for name, rows in slices.items()}
