"""Guiders and schedulers as nodes: the class's ``__init__`` arguments are the widgets (schema from their type
hints and defaults), the output is the made object (``guider`` / ``scheduler``).

A scheduler node may take a ``scheduler`` input, usually the loaded model's: its config is the starting point
and the widgets given override it (``DDIMScheduler`` with the model's betas), as ``from_config`` does.
"""

from __future__ import annotations

import inspect
import json
import typing
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .node_type import NodeInput, NodeOutput, NodeType, RunContext


def _signature_inputs(cls: type) -> tuple[dict[str, NodeInput], dict[str, TypeAdapter]]:
    """Widgets for the JSON-describable arguments of ``cls.__init__``, and a validator for each."""
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # a hint naming something not importable here: fall back to the defaults' types
        hints = {}
    inputs, adapters = {}, {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        default = None if param.default is inspect.Parameter.empty else param.default
        hint = hints.get(name, type(default) if default is not None else Any)
        try:
            adapter = TypeAdapter(hint)
            schema = adapter.json_schema()
        except Exception:
            continue  # a config object no widget can hold (a layer-skip config): set it in Python
        if _json_safe(default):  # JSON has no infinities: such an argument shows no default (the class's applies)
            schema["default"] = default
        inputs[name] = NodeInput(schema)
        adapters[name] = adapter
    return inputs, adapters


def _json_safe(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
        return True
    except (TypeError, ValueError):
        return False


class _ConfigNode(NodeType):
    output: str

    def __init__(self, cls: type, category: str):
        self.cls = cls
        self.name = cls.__name__
        self.category = category
        self.description = (inspect.getdoc(cls) or "").split("\n\n")[0]
        self.inputs, self._adapters = _signature_inputs(cls)
        self.outputs = {self.output: NodeOutput(self.output)}
        self._source_version = None  # of the guider or scheduler class, read on first use

    def check_value(self, name: str, value: Any) -> str | None:
        adapter = self._adapters.get(name)
        if adapter is None:
            return None
        try:
            adapter.validate_python(value, strict=False)
        except ValidationError as err:
            return f"must be {self.inputs[name].schema.get('type', 'a valid value')}: {err.errors()[0]['msg']}, got {value!r}"
        return None


class GuiderNode(_ConfigNode):
    output = "guider"

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        return {"guider": self.cls(**values)}


class SchedulerNode(_ConfigNode):
    output = "scheduler"

    def __init__(self, cls: type, category: str):
        super().__init__(cls, category)
        self.inputs["scheduler"] = NodeInput(
            {"description": "a scheduler whose config to start from (the loaded model's); widgets override it"},
            socket="scheduler")

    def check_value(self, name: str, value: Any) -> str | None:
        if name == "scheduler":
            return "takes no constant value (socket 'scheduler'): wire a scheduler into it"
        return super().check_value(name, value)

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        base = values.pop("scheduler", None)
        if base is None:
            return {"scheduler": self.cls(**values)}
        return {"scheduler": self.cls.from_config(base.config, **values)}
