"""A block's inputs as a JSON schema (for node UIs), built with pydantic from its InputParams.

Types pydantic can describe (int, float, str, lists, unions, ...) become JSON types; others (tensors,
generators, images) become an unconstrained field tagged with ``x-python-type`` so a UI can offer a socket.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, PydanticSchemaGenerationError, create_model
from pydantic.errors import PydanticInvalidForJsonSchema
from pydantic.json_schema import PydanticJsonSchemaWarning

from .params import InputParam, type_name

_CONFIG = ConfigDict(arbitrary_types_allowed=True)


def _json_type(hint: Any) -> tuple[Any, dict]:
    """The annotation to give pydantic, and extra JSON-schema keys for hints it cannot describe."""
    if hint is None or isinstance(hint, str):
        return Any, ({"x-python-type": hint} if hint else {})
    try:
        create_model("_Probe", value=(hint, ...), __config__=_CONFIG).model_json_schema()
        return hint, {}
    except (PydanticSchemaGenerationError, PydanticInvalidForJsonSchema, TypeError, ValueError):
        return Any, {"x-python-type": type_name(hint)}


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


def input_schema(block) -> dict[str, Any]:
    """JSON schema of ``block.inputs``: properties with types, defaults and descriptions; ``required``."""
    import warnings

    fields = {p.name: _field(p) for p in block.inputs if p.name is not None}
    model = create_model(type(block).__name__ + "Inputs", __config__=_CONFIG, **fields)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PydanticJsonSchemaWarning)
        schema = model.model_json_schema()
    schema["description"] = (block.description() if callable(block.description) else block.description) or ""
    return schema
