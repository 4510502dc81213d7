"""InsertableDict: an ordered dict you can insert into at a position (presets and ``sub_blocks``)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from ..components.errors import DuplicateKeyError


class InsertableDict(dict):
    """An insertion-ordered dict with ``insert(key, value, index)``.

    Every value that goes in passes ``_check`` (subclasses validate or convert there), whichever way it is put.
    """

    def __init__(self, items: Mapping | Iterable[tuple[Any, Any]] = ()):
        super().__init__()
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self[key] = value

    def _check(self, key: Any, value: Any) -> Any:
        """Hook for subclasses to validate or convert values; returns the value to store."""
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, self._check(key, value))

    def insert(self, key: Any, value: Any, index: int) -> None:
        """Put ``key`` at position ``index`` (negative counts from the end; past the end appends).

        Raises:
            DuplicateKeyError: ``key`` is already present (pop it first, or assign to replace it in place);
                a KeyError.
        """
        if key in self:
            raise DuplicateKeyError.already_present(key, list(self).index(key))
        items = list(self.items())
        if index < 0:
            index = max(len(items) + index + 1, 0)
        items.insert(index, (key, self._check(key, value)))
        super().clear()
        for k, v in items:
            super().__setitem__(k, v)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> "InsertableDict":
        return type(self)(self.items())

    def __repr__(self) -> str:
        from ..components.formatting import format_value

        lines = [f"  {i}: ({k!r}, {format_value(v)})" for i, (k, v) in enumerate(self.items())]
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)" if lines else f"{type(self).__name__}()"
