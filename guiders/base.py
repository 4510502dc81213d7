"""The contract between a guider and the denoise loop.

A guider says, for the current step, which model predictions ("branches") it needs, applies the model
perturbations some branches need, and combines the predictions into one. The loop is written against
exactly this::

    guider.reset()                                   # once per pipeline call, before the first step
    for i, t in enumerate(timesteps):
        guider.set_state(step=i, num_inference_steps=len(timesteps), timestep=t)
        branches = guider.branches                   # e.g. pred_cond, pred_uncond, pred_cond_skip
        embeds = [prompt_embeds if b.conditional else negative_prompt_embeds for b in branches]
        slices = guider.batch_slices(batch_size)     # {"pred_cond": slice(0, B), ...}
        with guider.perturb(unet, slices):           # perturbations only touch their branch's rows
            out = unet(torch.cat([latents] * len(branches)), t, encoder_hidden_states=torch.cat(embeds))
        noise_pred = guider.combine({name: out[rows] for name, rows in slices.items()}).pred

Branches may also be run in several forwards: ``perturb`` only touches the branches named in ``slices``.
"""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator, Mapping

import torch
from torch import nn

from ..components.config import ConfigMixin
from ..components.errors import ConfigError, GuiderError
from .hooks import apply_perturbations, perturbation_edits, rows_covered

COND = "pred_cond"
UNCOND = "pred_uncond"

_REGISTRY: dict[str, type["BaseGuidance"]] = {}


@dataclass(frozen=True)
class GuidanceBranch:
    """One model prediction a guider needs on this step.

    Args:
        name: Key of this prediction in :meth:`BaseGuidance.combine` and in ``perturb``'s slices.
        conditional: True when the branch is fed the positive conditioning (prompt embeds), False for the
            negative one.
        perturbations: The model changes this branch runs under
            (:class:`LayerSkipConfig` / :class:`SmoothedEnergyGuidanceConfig`); empty for a plain forward.
    """

    name: str
    conditional: bool
    perturbations: tuple = ()


@dataclass(frozen=True)
class GuiderOutput:
    """The combined prediction and the plain predictions it was made from."""

    pred: torch.Tensor
    pred_cond: torch.Tensor | None = None
    pred_uncond: torch.Tensor | None = None


def check_window(owner: str, start: float, stop: float, keys: tuple[str, str] = ("start", "stop")) -> None:
    """A guidance window is fractions ``0 <= start < 1`` and ``start <= stop <= 1``."""
    if not 0.0 <= start < 1.0:
        raise ConfigError.bad_value(owner, keys[0], "a fraction in [0, 1)", start)
    if not start <= stop <= 1.0:
        raise ConfigError.bad_value(owner, keys[1], f"a fraction in [{keys[0]}={start}, 1]", stop)


def check_finite(owner: str, config: Mapping[str, Any]) -> None:
    """Every number in ``config`` (also inside lists and tuples) is finite: no NaN or infinite scale.

    Raises:
        ConfigError: naming the first key with a NaN or infinite number.
    """
    for key, value in config.items():
        items = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(v, numbers.Real) and not math.isfinite(v) for v in items):
            expected = "finite numbers" if isinstance(value, (list, tuple)) else "a finite number"
            raise ConfigError.bad_value(owner, key, expected, value)


def _models_in(value: Any, seen: set[int] | None = None) -> list[nn.Module]:
    """The ``nn.Module`` objects reachable from ``value`` through containers and plain objects' attributes."""
    seen = set() if seen is None else seen
    if id(value) in seen or isinstance(value, (str, bytes, numbers.Number, torch.Tensor)) or value is None:
        return []
    seen.add(id(value))
    if isinstance(value, nn.Module):
        return [value]
    if isinstance(value, Mapping):
        children = list(value.values())
    elif isinstance(value, (list, tuple, set, frozenset)):
        children = list(value)
    else:
        children = list(getattr(value, "__dict__", {}).values())
    return [m for child in children for m in _models_in(child, seen)]


class BaseGuidance(ConfigMixin):
    """Base of every guider: step state, the branch/perturb/combine contract and config I/O.

    Subclasses decorate ``__init__`` with ``register_to_config`` and implement :meth:`_branches` (the
    branches while enabled) and :meth:`_combine` (given at least ``pred_cond``).

    Args:
        start: Fraction of the steps after which guidance starts (step ``int(start * n)`` is the first).
        stop: Fraction of the steps after which it stops (step ``int(stop * n)`` is the first without).
        enabled: False leaves only the conditional branch; only the user turns it back on.
    """

    config_name: ClassVar[str] = "guider_config.json"
    # Every model change some branch of this guider may run under, and the config keys it comes from
    # (the first that is set names it in errors).
    perturbations: tuple = ()
    perturbation_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self, start: float = 0.0, stop: float = 1.0, enabled: bool = True):
        check_finite(type(self).__name__, self.config)
        check_window(type(self).__name__, start, stop)
        self._start = start
        self._stop = stop
        self._enabled = bool(enabled)
        self.reset()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if not cls.__name__.startswith("_"):
            _REGISTRY[cls.__name__] = cls

    # --- state -------------------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything from a previous pipeline call (step state, momentum); called before step 0."""
        self._step: int | None = None
        self._num_inference_steps: int | None = None
        self._timestep = None
        self._reset_state()

    def _reset_state(self) -> None:
        """Per-call state of a subclass (e.g. APG momentum) is cleared here."""

    def set_state(self, step: int, num_inference_steps: int, timestep: Any = None) -> None:
        """Tell the guider which step comes next; called before each step.

        Raises:
            GuiderError: when ``step`` is negative or ``num_inference_steps`` is not positive.
        """
        if step < 0 or num_inference_steps < 1:
            raise GuiderError(
                f"{type(self).__name__}.set_state needs step >= 0 and num_inference_steps >= 1, "
                f"got step={step}, num_inference_steps={num_inference_steps}"
            )
        self._step = int(step)
        self._num_inference_steps = int(num_inference_steps)
        self._timestep = timestep

    @property
    def enabled(self) -> bool:
        """False: only the conditional branch runs and ``combine`` returns it."""
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        self._enabled = bool(value)
        self.register_to_config(enabled=self._enabled)

    def in_window(self, start: float, stop: float, strict_start: bool = False) -> bool:
        """Whether the current step is in ``[int(start*n), int(stop*n))`` (before any step: True).

        ``strict_start`` excludes the first step, as the perturbed windows of SLG/PAG/SEG do (a port of the
        SD 3.5 reference, ``step > start * n``), except for ``start == 0``, which includes step 0 (diffusers
        skips it, so a PAG window starting at 0 could never reproduce the classic PAG pipelines).
        """
        if self._num_inference_steps is None or self._step is None:
            return True
        first = int(start * self._num_inference_steps)
        last = int(stop * self._num_inference_steps)
        # a zero start means "from the first step", also for windows that otherwise exclude their start
        started = self._step > first if strict_start and start > 0 else self._step >= first
        return started and self._step < last

    def _guides(self, scale: float, use_original_formulation: bool) -> bool:
        """A CFG-like term is active: in the guider's window and its scale is not the identity."""
        identity = 0.0 if use_original_formulation else 1.0
        return self.in_window(self._start, self._stop) and not math.isclose(scale, identity)

    # --- the contract --------------------------------------------------------------------------------

    @property
    def branches(self) -> list[GuidanceBranch]:
        """The predictions needed on the current step; ``pred_cond`` always comes first."""
        if not self._enabled:
            return [GuidanceBranch(COND, True)]
        return self._branches()

    def _branches(self) -> list[GuidanceBranch]:
        raise NotImplementedError

    @property
    def num_conditions(self) -> int:
        return len(self.branches)

    def batch_slices(self, batch_size: int) -> dict[str, slice]:
        """Rows of each branch when the branches are concatenated in order, ``batch_size`` rows each."""
        return {b.name: slice(i * batch_size, (i + 1) * batch_size) for i, b in enumerate(self.branches)}

    @contextlib.contextmanager
    def perturb(self, model: torch.nn.Module, slices: Mapping[str, slice]) -> Iterator[None]:
        """Apply the perturbations of the branches named in ``slices`` to their rows, for one forward.

        Args:
            model: The denoiser.
            slices: Rows of the batched forward per branch name (branches run elsewhere may be left out).

        Raises:
            GuiderError: when ``slices`` names a branch this step does not have, or the model lacks a
                module a perturbation needs.
        """
        branches = {b.name: b for b in self.branches}
        unknown = sorted(set(slices) - set(branches))
        if unknown:
            raise GuiderError(
                f"{type(self).__name__} has no branch {', '.join(unknown)} on step {self._step}; "
                f"its branches are: {', '.join(branches)}"
            )
        plan = [(slices[name], p) for name, b in branches.items() if name in slices for p in b.perturbations]
        batch = rows_covered(slices.values())
        with apply_perturbations(model, plan, batch=batch):
            yield

    def combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        """Combine the branch predictions of this step; terms whose branch is absent are left out.

        Raises:
            GuiderError: when ``pred_cond`` is missing.
        """
        if preds.get(COND) is None:
            raise GuiderError(f"{type(self).__name__}.combine needs 'pred_cond'; got {', '.join(preds) or 'nothing'}")
        if not self._enabled:
            return GuiderOutput(pred=preds[COND], pred_cond=preds[COND], pred_uncond=preds.get(UNCOND))
        return self._combine(preds)

    def _combine(self, preds: Mapping[str, torch.Tensor]) -> GuiderOutput:
        raise NotImplementedError

    def new(self, **overrides: Any) -> "BaseGuidance":
        """A fresh guider of the same class and config, with ``overrides`` applied."""
        return type(self).from_config(self.config, **overrides)

    def for_call(self) -> "BaseGuidance":
        """An independent copy of this guider for one pipeline call, with fresh per-call state.

        The copy keeps everything set on this guider, also after construction (``enabled``, attributes);
        it shares no mutable state with it, except the models it references, which are shared, not copied.
        This guider is not touched: calls running at the same time each step their own copy.
        """
        shared = {id(m): m for m in _models_in(vars(self))}
        clone = copy.deepcopy(self, shared)
        clone.reset()
        return clone

    def check_model(self, model: torch.nn.Module) -> None:
        """Check that ``model`` has every module any perturbation of this guider may need, on any step.

        The denoise loop calls this before step 0, so a bad layer fails at once rather than at the first
        step inside a perturbed window. Guiders without perturbations accept any model.

        Raises:
            GuiderError: naming this guider, its config key and the missing block list, index or submodule.
        """
        if not self.perturbations:
            return
        key = next((k for k in self.perturbation_keys if self.config.get(k) is not None), "perturbations")
        for perturbation in self.perturbations:
            try:
                perturbation_edits(model, slice(0, 1), perturbation, 1)
            except GuiderError as err:
                raise GuiderError.not_in_model(type(self).__name__, key, err) from err

    # --- saving and loading --------------------------------------------------------------------------

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``guider_config.json`` into ``save_directory``; returns the file's path."""
        return self.save_config(save_directory)

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        revision: str | None = None,
        **overrides: Any,
    ) -> "BaseGuidance":
        """Load a guider from ``guider_config.json`` in a folder or Hub repo.

        ``BaseGuidance.from_pretrained`` builds whichever guider the file names (``_class_name``).

        Raises:
            MissingFileError: when there is no ``guider_config.json``.
            GuiderError: when the file describes another guider than ``cls``.
        """
        config = cls.load_config(path_or_repo, subfolder=subfolder, revision=revision)
        return cls._class_for(config.get("_class_name"), str(path_or_repo)).from_config(config, **overrides)

    @classmethod
    def _class_for(cls, name: str | None, where: str) -> type["BaseGuidance"]:
        target = _REGISTRY.get(name) if name else None
        if target is not None and issubclass(target, cls):
            return target
        if name is None and cls.__name__ in _REGISTRY:
            return cls
        known = ", ".join(sorted(_REGISTRY))
        if target is None and name is not None and cls is BaseGuidance:
            raise GuiderError(f"{where}: unknown guider class '{name}'; known guiders: {known}")
        raise GuiderError(
            f"{where} holds a {name or 'guider without _class_name'}, not a {cls.__name__}; "
            f"load it with BaseGuidance.from_pretrained or the class it names"
        )

    def push_to_hub(
        self,
        repo_id: str,
        subfolder: str | None = None,
        commit_message: str | None = None,
        private: bool | None = None,
        token: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
    ) -> Any:
        """Upload ``guider_config.json`` to ``repo_id`` (into ``subfolder``), creating the repo if needed.

        Returns:
            huggingface_hub's commit info.
        """
        import huggingface_hub

        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp)
            huggingface_hub.create_repo(repo_id, token=token, private=private, exist_ok=True)
            return huggingface_hub.upload_folder(
                repo_id=repo_id,
                folder_path=tmp,
                path_in_repo=subfolder or None,
                commit_message=commit_message or f"Upload {type(self).__name__}",
                token=token,
                revision=revision,
                create_pr=create_pr,
            )
