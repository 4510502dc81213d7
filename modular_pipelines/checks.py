"""Run-time input type checks with pydantic, and the declaration checks every block passes once."""

from __future__ import annotations

import functools
from typing import Any, Iterable

from pydantic import ConfigDict, PydanticSchemaGenerationError, TypeAdapter, ValidationError

from .errors import BlockDeclarationError, InputTypeError
from .params import InputParam, OutputParam, type_name

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


def check_input_type(param: InputParam, value: Any, path: str | None, block_cls: str) -> None:
    """Refuse ``value`` when ``param`` has a concrete type hint it does not satisfy (None always passes)."""
    if value is None:
        return
    adapter = _cached_adapter(param.type_hint)
    if adapter is None:
        return
    try:
        adapter.validate_python(value)
    except ValidationError as err:
        raise InputTypeError.wrong_type(param.name, path, block_cls, type_name(param.type_hint), value) from err


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
