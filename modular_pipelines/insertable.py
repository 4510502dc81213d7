"""InsertableDict: an ordered dict you can insert into at a position (presets and ``sub_blocks``)."""

from __future__ import annotations

from typing import Any, Iterable, Mapping


class InsertableDict(dict):
    """An insertion-ordered dict with ``insert(key, value, index)``.

    ``version`` increases on every change, so owners can cache what they derive from the contents.
    """

    def __init__(self, items: Mapping | Iterable[tuple[Any, Any]] = ()):
        super().__init__()
        self.version = 0
        pairs = items.items() if isinstance(items, Mapping) else items
        for key, value in pairs:
            self[key] = value

    def _check(self, key: Any, value: Any) -> Any:
        """Hook for subclasses to validate or convert values; returns the value to store."""
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, self._check(key, value))
        self.version += 1

    def __delitem__(self, key: Any) -> None:
        super().__delitem__(key)
        self.version += 1

    def insert(self, key: Any, value: Any, index: int) -> None:
        """Put ``key`` at position ``index`` (negative counts from the end; past the end appends).

        Raises:
            KeyError: ``key`` is already present (pop it first, or assign to replace it in place).
        """
        if key in self:
            raise KeyError(f"'{key}' is already present at position {list(self).index(key)}; assign to replace it")
        items = list(self.items())
        if index < 0:
            index = max(len(items) + index + 1, 0)
        items.insert(index, (key, self._check(key, value)))
        super().clear()
        for k, v in items:
            super().__setitem__(k, v)
        self.version += 1

    def pop(self, key: Any, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self.version += 1
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self.version += 1
        return item

    def clear(self) -> None:
        super().clear()
        self.version += 1

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
