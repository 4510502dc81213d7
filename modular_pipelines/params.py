"""InputParam and OutputParam: the typed, immutable declarations of what a block reads and writes.

A param is a small frozen value object. ``NO_DEFAULT`` marks "no default": an optional input without a
default reads as ``None``; a required input may not have a default (that would make ``required`` a lie).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

from .errors import BlockDeclarationError


class _NoDefault:
    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_DEFAULT"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self):
        return (_NoDefault, ())


NO_DEFAULT: Any = _NoDefault()
"""Sentinel: the param has no default value."""


def _frozen(metadata: Mapping | None) -> Mapping | None:
    return None if metadata is None else MappingProxyType(dict(metadata))


@dataclass(frozen=True, eq=True)
class InputParam:
    """A value a block reads from the pipeline state.

    Args:
        name: the state key; ``None`` only together with ``kwargs_type`` (read every value of that kind).
        type_hint: a type (checked at run time with pydantic when concrete) or a descriptive string.
        default: used when the value is absent or None; ``NO_DEFAULT`` for none.
        required: the pipeline refuses to run the block without it.
        description: one line for docs and UIs.
        kwargs_type: a group name (e.g. ``"denoiser_input_fields"``) whose values this input collects.
        metadata: free-form extra information (read-only).

    Raises:
        BlockDeclarationError: a required param with a default, or neither name nor kwargs_type.
    """

    name: str | None
    type_hint: Any = None
    default: Any = NO_DEFAULT
    required: bool = False
    description: str = ""
    kwargs_type: str | None = None
    metadata: Mapping | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.name is None and self.kwargs_type is None:
            raise BlockDeclarationError("InputParam needs a name or a kwargs_type")
        if self.required and self.default is not NO_DEFAULT and self.default is not None:
            raise BlockDeclarationError(
                f"InputParam '{self.name}' is required and has a default ({self.default!r}); "
                "a required input cannot have a default"
            )
        if self.default is None:
            object.__setattr__(self, "default", NO_DEFAULT)
        object.__setattr__(self, "metadata", _frozen(self.metadata))

    @property
    def has_default(self) -> bool:
        return self.default is not NO_DEFAULT

    @property
    def default_value(self) -> Any:
        """The value the block sees when the input is absent."""
        return None if self.default is NO_DEFAULT else self.default

    def replace(self, **changes: Any) -> "InputParam":
        """A copy with some fields changed (params are never mutated)."""
        values = {f: getattr(self, f) for f in self.__dataclass_fields__}
        values.update(changes)
        return InputParam(**values)


@dataclass(frozen=True, eq=True)
class OutputParam:
    """A value a block writes to the pipeline state.

    Args:
        name: the state key.
        type_hint: what the value is.
        description: one line for docs and UIs.
        kwargs_type: a group name; inputs declaring the same ``kwargs_type`` collect this value.
        metadata: free-form extra information (read-only).
    """

    name: str
    type_hint: Any = None
    description: str = ""
    kwargs_type: str | None = None
    metadata: Mapping | None = field(default=None, compare=False)

    def __post_init__(self):
        if not self.name:
            raise BlockDeclarationError("OutputParam needs a name")
        object.__setattr__(self, "metadata", _frozen(self.metadata))


def type_name(type_hint: Any) -> str:
    """A readable name for a type hint (``Tensor``, ``str | list[str]``, ``'PIL.Image'``)."""
    if type_hint is None:
        return "Any"
    if isinstance(type_hint, str):
        return type_hint
    if isinstance(type_hint, type):
        return type_hint.__name__
    text = repr(type_hint)
    for prefix in ("typing.", "torch.", "PIL.Image."):
        text = text.replace(prefix, "")
    return text
