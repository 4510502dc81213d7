"""Components as nodes see them: the ``components`` bundle a loader outputs, the object a block node's blocks get
as ``components`` (like a pipeline's: attribute access to components and config values, a progress bar), and
the socket a component travels on."""

from __future__ import annotations

from typing import Any

from .node_type import RunContext


class ComponentsBundle:
    """Loaded components by name, the repo's config values, and where they came from."""

    def __init__(self, components: dict[str, Any], config: dict[str, Any] | None = None, source: str = ""):
        self.components = dict(components)
        self.config = dict(config or {})
        self.source = source

    def __repr__(self) -> str:
        loaded = ", ".join(n for n, c in self.components.items() if c is not None)
        return f"ComponentsBundle({self.source!r}: {loaded})"


def component_socket(spec) -> str:
    """``"scheduler"`` or ``"guider"`` for those kinds (any member stands in for another), else the class name."""
    from ..components.schedulers import SCHEDULERS
    from ..guiders import GUIDERS

    label = spec.type_label
    if label in SCHEDULERS:
        return "scheduler"
    if label in GUIDERS:
        return "guider"
    return label or "any"


class NodeBinding:
    """What ``CallComponents`` wraps for one node run: the components, config values, device and progress."""

    def __init__(self, components: dict[str, Any], config: dict[str, Any], ctx: RunContext):
        self._components = components
        self._config_values = config
        self._ctx = ctx

    def __getattr__(self, name: str) -> Any:
        data = self.__dict__
        if name in data["_components"]:
            return data["_components"][name]
        if name in data["_config_values"]:
            return data["_config_values"][name]
        raise AttributeError(f"node '{data['_ctx'].node}' has no component or config '{name}'")

    @property
    def components(self) -> dict[str, Any]:
        return dict(self._components)

    @property
    def device(self):
        import torch

        for component in self._components.values():
            if isinstance(component, torch.nn.Module):
                for param in component.parameters():
                    return param.device
        return torch.device(self._ctx.device)

    def progress_bar(self, iterable=None, total: int | None = None) -> "StepProgress":
        return StepProgress(self._ctx, total if total is not None else len(iterable))


class StepProgress:
    """The loop driver's progress bar, reporting ``node.progress`` events instead of drawing."""

    def __init__(self, ctx: RunContext, total: int):
        self.ctx, self.total, self.step = ctx, total, 0
        ctx.extra["progress"] = self  # the previewer asks it whether a step is the loop's last

    def __enter__(self) -> "StepProgress":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def update(self, n: int = 1) -> None:
        self.step += n
        self.ctx.event("node.progress", step=self.step, total=self.total)
