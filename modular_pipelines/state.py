"""PipelineState (everything the run has seen) and BlockState (one block's local view)."""

from __future__ import annotations

from typing import Any, Iterable

from ..components.formatting import format_value


class PipelineState:
    """The global state of one pipeline run.

    ``values`` holds the user's inputs and every intermediate output; ``kwargs_mapping`` records which
    names belong to a ``kwargs_type`` group (e.g. all ``denoiser_input_fields``).
    """

    __slots__ = ("values", "kwargs_mapping")

    def __init__(self, values: dict[str, Any] | None = None):
        self.values: dict[str, Any] = dict(values or {})
        self.kwargs_mapping: dict[str, list[str]] = {}

    def set(self, name: str, value: Any, kwargs_type: str | None = None) -> None:
        """Store ``value`` under ``name``, optionally tagging it with a ``kwargs_type`` group."""
        self.values[name] = value
        if kwargs_type is not None:
            names = self.kwargs_mapping.setdefault(kwargs_type, [])
            if name not in names:
                names.append(name)

    def get(self, name: str | Iterable[str], default: Any = None) -> Any:
        """One value by name, or a dict of values for a list of names (absent ones are ``default``)."""
        if isinstance(name, str):
            return self.values.get(name, default)
        return {n: self.values.get(n, default) for n in name}

    def get_by_kwargs(self, kwargs_type: str) -> dict[str, Any]:
        """Every value tagged with ``kwargs_type``, in the order they were set."""
        return {n: self.values.get(n) for n in self.kwargs_mapping.get(kwargs_type, [])}

    def copy(self) -> "PipelineState":
        new = PipelineState(self.values)
        new.kwargs_mapping = {k: list(v) for k, v in self.kwargs_mapping.items()}
        return new

    def __contains__(self, name: str) -> bool:
        return name in self.values

    def __getattr__(self, name: str) -> Any:
        """``state.images`` is ``state.get("images")`` for a value the run holds."""
        if name.startswith("__") or name in PipelineState.__slots__:
            raise AttributeError(name)
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(
                f"PipelineState has no value '{name}'; it holds: {', '.join(sorted(self.values)) or 'nothing'}"
            ) from None

    def __repr__(self) -> str:
        lines = [f"    {k!r}: {format_value(v)}" for k, v in self.values.items()]
        body = "\n".join(lines)
        kwargs = ""
        if self.kwargs_mapping:
            kwargs = "\n  kwargs_mapping={\n" + "\n".join(
                f"    {k!r}: {v}" for k, v in self.kwargs_mapping.items()
            ) + "\n  },"
        return f"PipelineState(\n  values={{\n{body}\n  }},{kwargs}\n)"


class BlockState:
    """Attribute access over the slice of the pipeline state one block declared.

    Blocks read and assign attributes (``block_state.latents = ...``); ``set_block_state`` pushes the
    declared outputs and any changed inputs back to the :class:`PipelineState`.
    """

    def __init__(self, **values: Any):
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:
        # only called when the attribute is absent
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"BlockState has no value '{name}'; it holds: {', '.join(sorted(self.__dict__)) or 'nothing'}. "
            "Declare it in the block's inputs or set it before reading it."
        )

    def __contains__(self, name: str) -> bool:
        return name in self.__dict__

    def __repr__(self) -> str:
        lines = [f"    {k}: {format_value(v)}" for k, v in self.__dict__.items()]
        return "BlockState(\n" + "\n".join(lines) + "\n)"
