"""Run-time input checks with pydantic, and the declaration checks every block passes once.

An input's constraints are declared once, in its ``type_hint``: ``Annotated[int, Field(gt=0)]``,
``Annotated[float, Field(ge=0, le=1)]``, ``Annotated[torch.Tensor, Finite]``. The same declaration
validates each call (:func:`check_input_type`) and shows in the block's JSON schema and docs.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, Iterable

import numpy as np
from pydantic import AfterValidator, ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

from ..components.errors import BlockDeclarationError, InputTypeError, InputValueError
from .params import InputParam, OutputParam, constraint_phrases, type_name

_STRICT = ConfigDict(strict=True, arbitrary_types_allowed=True)


@functools.lru_cache(maxsize=512)
def _adapter(type_hint: Any) -> TypeAdapter | None:
    """A strict pydantic adapter for a concrete hint; None for hints we do not check (strings, Any)."""
    if type_hint is None or isinstance(type_hint, str) or type_hint is Any:
        return None
    try:
        return TypeAdapter(type_hint, config=_STRICT)
    except (PydanticSchemaGenerationError, TypeError, ValueError):
        return None


def _cached_adapter(type_hint: Any) -> TypeAdapter | None:
    try:
        return _adapter(type_hint)
    except TypeError:  # unhashable hint
        return None


def value_check(label: str, problem: Callable[[Any], str | None]) -> AfterValidator:
    """An ``Annotated`` marker refusing values for which ``problem(value)`` returns a message.

    Args:
        label: the constraint as docs show it (``"finite"``).
        problem: returns None for a good value, else what is wrong, worded to follow the input's name
            (``"must be finite (it holds 3 NaN)"``).
    """

    def validate(value: Any) -> Any:
        message = problem(value)
        if message:
            raise ValueError(message)
        return value

    validate.constraint = label
    return AfterValidator(validate)


def non_finite(value: Any) -> str | None:
    """What is not finite in a float, tensor, array or list of them (None when all is finite)."""
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            problem = non_finite(item)
            if problem:
                return f"{problem} (item {i})"
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else "must be finite"
    counts = _nan_inf_counts(value)
    if counts is None or counts == (0, 0):
        return None
    held = " and ".join(f"{n} {kind}" for n, kind in zip(counts, ("NaN", "inf")) if n)
    return f"must be finite (it holds {held})"


def _nan_inf_counts(value: Any) -> tuple[int, int] | None:
    """``(NaN count, inf count)`` of a float tensor or array holding any; None otherwise."""
    if hasattr(value, "is_floating_point"):  # a torch tensor (duck-typed: the core does not import torch)
        if not (value.is_floating_point() or value.is_complex()) or bool(value.isfinite().all()):
            return None
        return int(value.isnan().sum()), int(value.isinf().sum())
    if isinstance(value, (np.ndarray, np.generic)) and value.dtype.kind in ("f", "c"):
        if bool(np.isfinite(value).all()):
            return None
        return int(np.isnan(value).sum()), int(np.isinf(value).sum())
    return None


Finite = value_check("finite", non_finite)
"""``Annotated[torch.Tensor, Finite]``: refuses NaN or inf in a float, tensor, array or list of them."""

# pydantic error types that mean "the right type, a value the declaration refuses"
_VALUE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number",
                 "too_short", "too_long", "multiple_of", "value_error"}


def check_input_type(param: InputParam, value: Any, path: str | None, block_cls: str) -> None:
    """Refuse ``value`` when ``param``'s concrete type hint, with its constraints, does not accept it
    (None always passes).

    Raises:
        InputValueError: the type fits but a declared constraint does not (``must be > 0, got 0``).
        InputTypeError: the value is of another type.
    """
    if value is None:
        return
    adapter = _cached_adapter(param.type_hint)
    if adapter is None:
        return
    try:
        adapter.validate_python(value)
    except ValidationError as err:
        failed = next((e for e in err.errors() if e["type"] in _VALUE_ERRORS), None)
        if failed is None:
            raise InputTypeError.wrong_type(param.name, path, block_cls, type_name(param.type_hint), value) from err
        items = "".join(f"[{part}]" for part in failed["loc"] if isinstance(part, int))
        raise InputValueError.invalid(f"{param.name}{items}", path, block_cls, _problem(param.type_hint, failed),
                                      value) from err


def _problem(type_hint: Any, error: dict) -> str:
    if error["type"] == "value_error":  # a value_check marker: its own message
        return str(error["ctx"]["error"])
    phrases = _declared_phrases(type_hint)
    return "must be " + " and ".join(phrases) if phrases else error["msg"]


def _declared_phrases(type_hint: Any) -> list[str]:
    """The constraints of the first ``Annotated`` in ``type_hint`` (itself, a union member, a list's items)."""
    metadata = getattr(type_hint, "__metadata__", None)
    if metadata is not None:
        return constraint_phrases(metadata)
    for arg in getattr(type_hint, "__args__", ()):
        phrases = _declared_phrases(arg)
        if phrases:
            return phrases
    return []


def _duplicates(names: Iterable[str]) -> list[str]:
    seen, dups = set(), []
    for name in names:
        if name in seen:
            dups.append(name)
        seen.add(name)
    return dups


def check_declaration(block_cls: str, inputs: list[InputParam], outputs: list[OutputParam]) -> None:
    """A leaf block's params: the right classes, unique names."""
    for param in inputs:
        if not isinstance(param, InputParam):
            raise BlockDeclarationError(f"{block_cls}.inputs must hold InputParam objects, got {param!r}")
    for param in outputs:
        if not isinstance(param, OutputParam):
            raise BlockDeclarationError(f"{block_cls}.intermediate_outputs must hold OutputParam objects, got {param!r}")
    dups = _duplicates(p.name for p in inputs if p.name is not None)
    if dups:
        raise BlockDeclarationError.duplicate_names(block_cls, "inputs", dups)
    dups = _duplicates(p.name for p in outputs)
    if dups:
        raise BlockDeclarationError.duplicate_names(block_cls, "intermediate outputs", dups)


def check_block_names(block_cls: str, names: list[str]) -> None:
    dups = _duplicates(names)
    if dups:
        raise BlockDeclarationError.duplicate_names(block_cls, "block names", dups)
