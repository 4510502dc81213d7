"""InputParam and OutputParam: the typed, immutable declarations of what a block reads and writes.

A param is a small frozen value object. ``NO_DEFAULT`` marks "no default": an optional input without a
default reads as ``None``; a required input may not have a default (that would make ``required`` a lie).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType, UnionType
from typing import Annotated, Any, Iterable, Literal, Mapping, Union, get_args, get_origin

from ..components.errors import BlockDeclarationError


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


def constraint_phrases(metadata: Iterable[Any]) -> list[str]:
    """Readable constraints of ``Annotated`` metadata: ``["> 0"]``, ``["in [0, 1]"]``, ``["finite"]``.

    Understands pydantic's ``Field(gt=..., ge=..., lt=..., le=..., min_length=..., allow_inf_nan=False)``,
    the ``annotated_types`` markers those become, and validators carrying a ``constraint`` label.
    """
    bounds: dict[str, Any] = {}
    phrases: list[str] = []
    for item in metadata:
        for meta in getattr(item, "metadata", None) or [item]:  # a FieldInfo holds its constraints in .metadata
            for key in ("gt", "ge", "lt", "le"):
                if getattr(meta, key, None) is not None:
                    bounds[key] = getattr(meta, key)
            if getattr(meta, "min_length", None):
                phrases.append("non-empty" if meta.min_length == 1 else f"at least {meta.min_length} items")
            if getattr(meta, "allow_inf_nan", None) is False:
                phrases.append("finite")
            label = getattr(getattr(meta, "func", None), "constraint", None)
            if label:
                phrases.append(label)
    return ([_bounds_phrase(bounds)] if bounds else []) + phrases


def _bounds_phrase(bounds: dict[str, Any]) -> str:
    low = ("(", bounds["gt"]) if "gt" in bounds else ("[", bounds["ge"]) if "ge" in bounds else None
    high = (")", bounds["lt"]) if "lt" in bounds else ("]", bounds["le"]) if "le" in bounds else None
    if low and high:
        return f"in {low[0]}{low[1]}, {high[1]}{high[0]}"
    if low:
        return f"{'>' if low[0] == '(' else '>='} {low[1]}"
    return f"{'<' if high[0] == ')' else '<='} {high[1]}"


def _arg_name(arg: Any) -> str:
    """One argument of a generic: ``...``, a ``Callable``'s parameter list, or a type hint."""
    if arg is Ellipsis:
        return "..."
    if isinstance(arg, list):
        return f"[{', '.join(type_name(a) for a in arg)}]"
    return type_name(arg)


def type_name(type_hint: Any) -> str:
    """A readable name for a type hint (``Tensor``, ``str | list[str]``, ``int > 0``, ``Tensor, finite``)."""
    if type_hint is None or type_hint is Any:
        return "Any"
    if isinstance(type_hint, str):
        return type_hint
    if type_hint is type(None):
        return "None"
    origin, args = get_origin(type_hint), get_args(type_hint)
    if origin is Annotated:  # bounds follow the type ("int > 0", "float in [0, 1]"), other constraints a comma
        text = type_name(args[0])
        for phrase in constraint_phrases(type_hint.__metadata__):
            text += f" {phrase}" if phrase[0] in "<>" or phrase.startswith("in ") else f", {phrase}"
        return text
    if origin in (Union, UnionType):
        return " | ".join(type_name(arg) for arg in args)
    if isinstance(type_hint, type):
        return type_hint.__name__
    if origin is Literal:
        return f"Literal[{', '.join(repr(arg) for arg in args)}]"
    if isinstance(origin, type) and args:
        return f"{origin.__name__}[{', '.join(_arg_name(a) for a in args)}]"
    text = repr(type_hint)
    for prefix in ("typing.", "torch.", "PIL.Image."):
        text = text.replace(prefix, "")
    return text
