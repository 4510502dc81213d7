"""Config-backed objects: models, schedulers, guiders and image processors remember how they were made.

A class opts in by inheriting :class:`ConfigMixin` and decorating ``__init__`` with
:func:`register_to_config`; every init argument (defaults filled in) is then in ``obj.config``, and the
object can be rebuilt with ``type(obj).from_config(obj.config)`` or saved and loaded as a JSON file in the
diffusers layout (``config.json``, ``scheduler_config.json``, ...).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import uuid
from pathlib import Path
from typing import Any, ClassVar, Iterable, Mapping

from .errors import ConfigError, ReadOnlyConfigError
from .files import resolve_file


def register_to_config(init):
    """Decorate ``__init__`` so that its bound arguments become the object's config."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        ignored = set(getattr(type(self), "ignore_for_config", ()))
        config = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_KEYWORD or kind is inspect.Parameter.VAR_POSITIONAL:
                continue
            if name not in ignored:
                config[name] = value
        self._config = config
        self.__dict__.pop("_frozen_config", None)
        init(self, *args, **kwargs)

    wrapper._registers_config = True
    return wrapper


def jsonable(value: Any) -> Any:
    """``value`` with config objects (``to_dict``), tuples and arrays turned into plain JSON types."""
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


class StagedFiles:
    """Files written under temporary names beside their targets, swapped in together by :meth:`commit`.

    A save that fails midway leaves the old files as they were (only the temporaries are removed), so a
    folder that loaded before a failed save still loads, bit for bit the same.
    """

    def __init__(self, directory: str | os.PathLike):
        self.directory = Path(directory)
        self._staged: dict[Path, Path] = {}  # target -> temporary, in the order they were staged

    def path(self, name: str) -> Path:
        """Where to write the file that will become ``directory/name``."""
        target = self.directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:12]}.tmp")
        if target in self._staged:  # staged twice: the later write wins
            self._staged.pop(target).unlink(missing_ok=True)
        self._staged[target] = temporary
        return temporary

    def write_text(self, name: str, text: str) -> None:
        self.path(name).write_text(text)

    def commit(self) -> list[Path]:
        """Move every staged file onto its target (``os.replace``), in staging order; returns the targets."""
        for target, temporary in self._staged.items():
            os.replace(temporary, target)
        targets, self._staged = list(self._staged), {}
        return targets

    def discard(self) -> None:
        for temporary in self._staged.values():
            temporary.unlink(missing_ok=True)
        self._staged = {}


@contextlib.contextmanager
def staged_files(directory: str | os.PathLike):
    """``with staged_files(d) as staged: ...``: commit what was staged when the block succeeds, discard it
    when it raises."""
    staged = StagedFiles(directory)
    try:
        yield staged
    except BaseException:
        staged.discard()
        raise
    staged.commit()


class FrozenConfig(dict):
    """A read-only dict with attribute access (``unet.config.in_channels``), the ``config`` of every
    config-backed object (models, schedulers, guiders, image processors), like diffusers' configs.

    ``defaulted`` names the keys that took their default value when the object was built (diffusers'
    ``_use_default_values``); a scheduler's ``from_config`` does not carry those over.
    """

    def __init__(self, values: Mapping[str, Any] = (), defaulted: Iterable[str] = ()):
        super().__init__(values)
        object.__setattr__(self, "defaulted", frozenset(defaulted))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"config has no key '{name}'") from None

    def _read_only(self, *args, **kwargs):
        raise ReadOnlyConfigError.frozen()

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _read_only  # type: ignore[assignment]
    update = pop = popitem = clear = setdefault = __ior__ = _read_only  # type: ignore[assignment]

    def __reduce__(self):
        return (FrozenConfig, (dict(self), self.defaulted))


class ConfigMixin:
    """Adds ``config``, ``from_config``, ``load_config`` and ``save_config`` to a class."""

    config_name: ClassVar[str] = "config.json"
    ignore_for_config: ClassVar[tuple[str, ...]] = ()

    @property
    def config(self) -> FrozenConfig:
        """The init arguments this object was built with (plus values recorded since), read-only, with
        attribute access; built once and rebuilt after :meth:`register_to_config`."""
        frozen = self.__dict__.get("_frozen_config")
        if frozen is None:
            frozen = FrozenConfig(getattr(self, "_config", {}), getattr(self, "_defaulted", ()))
            self.__dict__["_frozen_config"] = frozen
        return frozen

    def register_to_config(self, **values: Any) -> None:
        """Record values computed after init (kept in saved configs)."""
        if "_config" not in self.__dict__:
            self._config = {}
        self._config.update(values)
        self.__dict__.pop("_frozen_config", None)

    @classmethod
    def init_params(cls) -> dict[str, inspect.Parameter]:
        params = dict(inspect.signature(cls.__init__).parameters)
        params.pop("self", None)
        return {
            k: p
            for k, p in params.items()
            if p.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
        }

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, **overrides: Any):
        """Build an instance from a config mapping; keys the class does not take are ignored.

        Keys starting with ``_`` (``_class_name``, ``_diffusers_version``) are metadata and skipped.
        """
        merged = {k: v for k, v in dict(config or {}).items() if not k.startswith("_")}
        merged.update(overrides)
        params = cls.init_params()
        kwargs = {k: v for k, v in merged.items() if k in params}
        return cls(**kwargs)

    @classmethod
    def load_config(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        revision: str | None = None,
    ) -> dict[str, Any]:
        """Read ``cls.config_name`` from a folder or Hub repo."""
        path = resolve_file(path_or_repo, cls.config_name, subfolder=subfolder, revision=revision, what="config")
        try:
            return json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ConfigError.unreadable(str(path), err) from err

    def to_json_dict(self) -> dict[str, Any]:
        data = {"_class_name": type(self).__name__}
        data.update({k: jsonable(v) for k, v in self.config.items()})
        return data

    def config_json(self) -> str:
        """The text ``save_config`` writes."""
        return json.dumps(self.to_json_dict(), indent=2, sort_keys=True) + "\n"

    def save_config(self, save_directory: str | os.PathLike) -> Path:
        """Write the config as ``save_directory/<config_name>`` (written beside it, then swapped in);
        returns the file's path."""
        with staged_files(save_directory) as staged:
            staged.write_text(self.config_name, self.config_json())
        return Path(save_directory) / self.config_name

    def __repr__(self) -> str:
        body = json.dumps({k: jsonable(v) for k, v in self.config.items()}, indent=2, sort_keys=True, default=str)
        return f"{type(self).__name__} {body}"
