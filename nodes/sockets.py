"""Socket types: what a wire between two nodes carries, read off the params' type hints.

A value JSON can carry (numbers, strings, booleans, lists of them) is a widget on an input (socket ``None``) and
its JSON type name on an output (``"integer"``, ``"number"``, ...), so an output may feed a widget of the same
JSON type. Everything else is a socket named for what travels: ``"tensor"``, ``"image"``, ``"generator"``,
``"dtype"``, a component kind (``"scheduler"``, ``"guider"``, a model class such as ``"UNet2DConditionModel"``),
the ``"components"`` bundle, or ``"any"`` when a param says nothing.
"""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", tuple: "array",
              dict: "object"}
# an input of the first socket accepts outputs of these sockets as well
ACCEPTS = {"image": {"image", "tensor"}, "number": {"number", "integer"}, "array": {"array", "tensor"}}


def members(hint: Any) -> list[Any]:
    """The alternatives of a hint, with ``Annotated`` and ``Optional`` taken off."""
    origin = get_origin(hint)
    if origin is Annotated:
        return members(get_args(hint)[0])
    if origin in (Union, UnionType):
        return [m for arg in get_args(hint) for m in members(arg) if m is not type(None)]
    return [hint]


def _value_socket(hint: Any) -> str | None:
    """The non-JSON socket of one alternative, or None when JSON can carry it."""
    origin = get_origin(hint)
    if origin in (list, tuple):
        inner = [_value_socket(arg) for arg in get_args(hint) if arg is not Ellipsis]
        return next((s for s in inner if s), None)
    if origin is not None:
        return None if origin in JSON_TYPES else "any"
    if hint in JSON_TYPES or hint is Any:
        return None
    if not isinstance(hint, type):
        return "any"
    names = {klass.__name__ for klass in hint.__mro__}
    module = hint.__module__
    if "Tensor" in names and module.startswith("torch"):
        return "tensor"
    if module.startswith("PIL") or "ndarray" in names:
        return "image"
    if "Generator" in names and module.startswith("torch"):
        return "generator"
    if hint.__name__ == "dtype" and module.startswith("torch"):
        return "dtype"
    return hint.__name__


def input_socket(hint: Any) -> str | None:
    """The socket of an input: ``None`` for a widget JSON can fill, else what must be wired in.

    A union takes the socket of its strongest member: an image input that also accepts tensors is ``"image"``."""
    if hint is None or isinstance(hint, str):
        return "any" if hint else None
    sockets = [s for s in (_value_socket(m) for m in members(hint)) if s]
    for preferred in ("image", "tensor", "generator"):
        if preferred in sockets:
            return preferred
    return sockets[0] if sockets else None


def output_socket(hint: Any) -> str:
    """The socket of an output: as for inputs, with JSON types named (``"integer"``) instead of ``None``."""
    socket = input_socket(hint)
    if socket is not None:
        return socket
    if hint is None or isinstance(hint, str):
        return "any"
    alternatives = members(hint)
    first = get_origin(alternatives[0]) or alternatives[0]
    return JSON_TYPES.get(first, "any")


def json_type(schema: dict[str, Any]) -> str | None:
    """The JSON type a widget's schema names (the first of ``anyOf``), or None."""
    if "type" in schema:
        return schema["type"]
    for option in schema.get("anyOf", []):
        if option.get("type") not in (None, "null"):
            return option["type"]
    return None


def fits(output: str, input_socket_name: str | None, input_schema: dict[str, Any]) -> bool:
    """Whether an output of socket ``output`` may be wired into an input (``input_socket_name`` None: a widget)."""
    target = input_socket_name or json_type(input_schema)
    if target is None or "any" in (output, target):
        return True
    return output == target or output in ACCEPTS.get(target, ())
