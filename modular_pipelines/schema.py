"""A block's inputs as a JSON schema (for node UIs), built with pydantic from its InputParams.

Types pydantic can describe (int, float, str, lists, unions, ...) become JSON types, with the constraints
declared in an ``Annotated`` hint (``exclusiveMinimum``, ``minimum``, ``maximum``, ``minItems``); others
(tensors, generators, images) become an unconstrained field tagged with ``x-python-type`` (the type without
its constraints, so a UI can offer a socket) and ``x-constraints`` (``["finite"]``).
"""

from __future__ import annotations

import warnings
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import ConfigDict, Field, PydanticSchemaGenerationError, create_model
from pydantic.errors import PydanticInvalidForJsonSchema
from pydantic.json_schema import PydanticJsonSchemaWarning

from .params import InputParam, constraint_phrases, type_name

_CONFIG = ConfigDict(arbitrary_types_allowed=True)


_DESCRIBABLE: dict[Any, bool] = {}


def _describable(hint: Any) -> bool:
    """Whether pydantic can show ``hint`` whole: it silently drops union members it cannot show (a tensor
    in ``Tensor | list[int]``), so each member is tried alone (once per hint: a probe model is slow to make)."""
    key = _hashable(hint)
    if key is None:
        return _try_describe(hint)
    if key not in _DESCRIBABLE:
        _DESCRIBABLE[key] = _try_describe(hint)
    return _DESCRIBABLE[key]


def _hashable(value: Any) -> Any:
    """``value`` itself when it can be a dict key, else None."""
    try:
        hash(value)
    except TypeError:
        return None
    return value


def _try_describe(hint: Any) -> bool:
    origin = get_origin(hint)
    if origin is Annotated:
        return _describable(get_args(hint)[0])
    if origin in (Union, UnionType):
        return all(_describable(arg) for arg in get_args(hint))
    try:
        create_model("_Probe", value=(hint, ...), __config__=_CONFIG).model_json_schema()
        return True
    except (PydanticSchemaGenerationError, PydanticInvalidForJsonSchema, TypeError, ValueError):
        return False


def _json_type(hint: Any) -> tuple[Any, dict]:
    """The annotation to give pydantic, and extra JSON-schema keys for hints it cannot describe."""
    if hint is None or isinstance(hint, str):
        return Any, ({"x-python-type": hint} if hint else {})
    if _describable(hint):
        return hint, {}
    if get_origin(hint) is not Annotated:
        return Any, {"x-python-type": type_name(hint)}
    extra = {"x-python-type": type_name(get_args(hint)[0])}
    phrases = constraint_phrases(hint.__metadata__)
    return Any, {**extra, "x-constraints": phrases} if phrases else extra


def _field(param: InputParam) -> tuple[Any, Any]:
    hint, extra = _json_type(param.type_hint)
    if param.required:
        default = ...
    elif param.has_default and _jsonable(param.default):
        default = param.default
    else:
        default = None
    return hint | None if not param.required and hint is not Any else hint, Field(
        default, description=param.description or None, json_schema_extra=extra or None)


def _jsonable(value: Any) -> bool:
    return isinstance(value, (int, float, str, bool, list, tuple, dict, type(None)))


_PROPERTIES: dict[Any, tuple[dict[str, Any], dict[str, Any]]] = {}


def _property_key(param: InputParam) -> Any:
    """What one param's schema is made of, as a dict key (None when its type hint cannot be one): the blocks
    declare the same input again and again (1287 params, 130 distinct, in the catalog)."""
    hint = _hashable(param.type_hint)
    if hint is None and param.type_hint is not None:
        return None
    default = repr(param.default) if param.has_default and _jsonable(param.default) else None
    return param.name, hint, param.required, default, param.description


def _property(param: InputParam) -> tuple[dict[str, Any], dict[str, Any]]:
    """The JSON schema of one param (and the ``$defs`` it refers to), made once per distinct declaration:
    pydantic models are the slow part of a schema."""
    key = _property_key(param)
    cached = _PROPERTIES.get(key) if key is not None else None
    if cached is not None:
        return cached
    model = create_model("Input", __config__=_CONFIG, value=_field(param))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema = model.model_json_schema()
    prop = {**schema["properties"]["value"], "title": param.name.replace("_", " ").title()}
    if key is not None:
        _PROPERTIES[key] = (prop, schema.get("$defs", {}))
    return prop, schema.get("$defs", {})


def _copy(value: Any) -> Any:
    """A copy of JSON data (dicts and lists copied all the way down; much faster than ``copy.deepcopy``)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def input_schema(block) -> dict[str, Any]:
    """JSON schema of ``block.inputs``: properties with types, defaults and descriptions; ``required``."""
    params = [p for p in block.inputs if p.name is not None]
    properties, defs = {}, {}
    for param in params:
        prop, param_defs = _property(param)
        properties[param.name] = _copy(prop)  # the cached one is shared by every block declaring it
        defs.update(_copy(param_defs))
    schema: dict[str, Any] = {"properties": properties, "title": type(block).__name__ + "Inputs", "type": "object"}
    required = [p.name for p in params if p.required]
    if required:
        schema["required"] = required
    if defs:
        schema["$defs"] = defs
    schema["description"] = (block.description() if callable(block.description) else block.description) or ""
    return schema
