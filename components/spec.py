"""ComponentSpec and ConfigSpec: what a block needs, and where a component comes from.

A component made by :meth:`ComponentSpec.load` or :meth:`ComponentSpec.create` remembers its spec, so
``ComponentSpec.from_component(name, obj)`` gives it back and the ComponentsManager can spot duplicates
by ``load_id``.
"""

from __future__ import annotations

import copy
import threading
import weakref
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ComponentLoadError, ConfigError

LOAD_ID_ATTR = "_diffblocks_load_id"
SPEC_ATTR = "_diffblocks_spec"
CREATION_METHODS = ("from_pretrained", "from_config")


class LazyClass:
    """A class named by its module and name, imported the first time a spec's ``type_hint`` is read.

    Blocks declare transformers components this way (``LazyClass("transformers", "CLIPTextModel")``), so that
    importing a preset does not import transformers; the first name that the module has wins (for classes
    renamed between library versions).
    """

    def __init__(self, module: str, *names: str):
        self.module, self.names = module, names

    @property
    def name(self) -> str:
        return self.names[0]

    def resolve(self) -> type:
        import importlib

        module = importlib.import_module(self.module)
        for name in self.names:
            found = getattr(module, name, None)
            if found is not None:
                return found
        raise ComponentLoadError(f"{self.module} has none of {', '.join(self.names)}")

    def __repr__(self) -> str:
        return f"LazyClass({self.module}.{self.name})"


class _TypeHint:
    """The ``type_hint`` field: a :class:`LazyClass` given to it becomes its class when first read."""

    def __get__(self, spec, owner=None):
        if spec is None:
            return None  # the dataclass default
        hint = spec.__dict__.get("_type_hint")
        if isinstance(hint, LazyClass):
            hint = spec.__dict__["_type_hint"] = hint.resolve()
        return hint

    def __set__(self, spec, value) -> None:
        spec.__dict__["_type_hint"] = value


# Tags (spec, load id, revision) of components that write their whole ``__dict__`` into their saved config and
# repr: transformers' image processors and tokenizers. Kept here by id until the component is collected.
_ASIDE: dict[int, dict[str, Any]] = {}
_aside_lock = threading.Lock()


def _kept_aside(component: object) -> bool:
    return type(component).__module__.startswith("transformers.") and not hasattr(component, "state_dict")


def _set_tag(component: object, attr: str, value: Any) -> None:
    if not _kept_aside(component):
        object.__setattr__(component, attr, value)
        return
    key = id(component)
    with _aside_lock:
        if key not in _ASIDE:
            weakref.finalize(component, _ASIDE.pop, key, None)
            _ASIDE[key] = {}
        _ASIDE[key][attr] = value


def _tag_of(component: object, attr: str, default: Any = None) -> Any:
    if _kept_aside(component):
        return _ASIDE.get(id(component), {}).get(attr, default)
    return getattr(component, attr, default)


def load_id_of(component: object) -> str | None:
    """The ``"repo|subfolder|variant|revision"`` id a component was loaded with, or None if unknown."""
    return _tag_of(component, LOAD_ID_ATTR)


REVISION_ATTR = "_diffblocks_revision"


def mark_changed(component: object) -> None:
    """Count a change made to ``component`` in place (adapters, processors, their scales): caches keyed by a
    component's identity (the node engine's) see it as another component afterwards."""
    _set_tag(component, REVISION_ATTR, revision_of(component) + 1)


def revision_of(component: object) -> int:
    return _tag_of(component, REVISION_ATTR, 0)


def _tag(component: Any, spec: "ComponentSpec") -> Any:
    """Remember on ``component`` the spec it was made from (skipped for objects that refuse attributes)."""
    try:
        _set_tag(component, SPEC_ATTR, spec.copy())
        if spec.default_creation_method == "from_pretrained" and spec.repo is not None:
            _set_tag(component, LOAD_ID_ATTR, spec.load_id)
    except (AttributeError, TypeError):
        pass
    return component


@dataclass
class ComponentSpec:
    """How to get a component: its name, class, and either a config or where to load it from.

    Args:
        name: the component's name in the pipeline (``unet``, ``guider``, ...).
        type_hint: the class (ours for diffusers-format parts, transformers classes as they are), or a
            :class:`LazyClass` naming it, imported when first needed.
        description: one line for docs.
        config: init arguments for ``create()`` (``from_config`` components).
        repo, subfolder, variant, revision: where ``load()`` reads from (local folder or Hub repo).
        default_creation_method: ``"from_pretrained"`` (weights/files) or ``"from_config"`` (built in code).
    """

    name: str | None = None
    type_hint: Any = _TypeHint()
    description: str | None = None
    config: dict | None = None
    repo: str | None = None
    subfolder: str | None = ""
    variant: str | None = None
    revision: str | None = None
    default_creation_method: str = "from_pretrained"

    def __post_init__(self):
        if self.default_creation_method not in CREATION_METHODS:
            raise ConfigError.bad_value(
                f"ComponentSpec '{self.name}'", "default_creation_method", " or ".join(CREATION_METHODS),
                self.default_creation_method,
            )
        if self.config is not None:
            self.config = dict(self.config)

    @property
    def load_id(self) -> str:
        """``"repo|subfolder|variant|revision"``, with ``null`` for missing parts."""
        parts = (self.repo, self.subfolder or None, self.variant, self.revision)
        return "|".join("null" if p is None else str(p) for p in parts)

    @property
    def type_label(self) -> str:
        """The class name, without importing a lazily declared class."""
        hint = self.__dict__.get("_type_hint")
        if isinstance(hint, LazyClass):
            return hint.name
        return getattr(hint, "__name__", None) or ("Any" if hint is None else str(hint))

    def copy(self) -> "ComponentSpec":
        made = copy.copy(self)  # the lazy type stays lazy
        if self.config is not None:
            made.config = copy.deepcopy(self.config)
        return made

    def create(self, config: dict | None = None, **overrides: Any) -> Any:
        """Build the component from ``config`` (default: the spec's) plus overrides.

        The returned object remembers a spec whose config includes the overrides, so
        ``pipe.get_component_spec("guider").create(guidance_scale=10)`` round-trips.
        """
        if self.type_hint is None:
            raise ComponentLoadError(f"ComponentSpec '{self.name}' has no type_hint to create")
        merged = dict(self.config or {}) if config is None else dict(config)
        merged.update(overrides)
        if hasattr(self.type_hint, "from_config"):
            component = self.type_hint.from_config(merged)
        else:
            component = self.type_hint(**merged)
        made = self.copy()
        made.config = dict(getattr(component, "config", None) or merged)
        made.default_creation_method = "from_config"
        return _tag(component, made)

    def load(self, **kwargs: Any) -> Any:
        """Load the component from ``repo``/``subfolder`` (keyword arguments go to its loader).

        A transformers class may run code its repo ships (``auto_map``) only when given
        ``trust_remote_code=True``; otherwise it is told False, so it refuses instead of asking on the terminal.
        """
        if self.repo is None:
            raise ComponentLoadError.no_source(self.name or "?")
        from .loading import load_component

        component = load_component(self, **kwargs)
        made = self.copy()
        made.default_creation_method = "from_pretrained"
        if made.type_hint is None:
            made.type_hint = type(component)
        return _tag(component, made)

    @classmethod
    def from_component(cls, name: str, component: Any) -> "ComponentSpec":
        """The spec a component was made with (renamed to ``name``), or one describing it from its config."""
        spec = _tag_of(component, SPEC_ATTR)
        if spec is not None:
            spec = spec.copy()
            spec.name = name
            return spec
        config = getattr(component, "config", None)
        if config is not None and hasattr(type(component), "from_config"):
            return cls(name=name, type_hint=type(component), config=dict(config), default_creation_method="from_config")
        return cls(name=name, type_hint=type(component))

    def __repr__(self) -> str:
        hint = self.type_hint
        shown = f"<class '{hint.__module__}.{hint.__qualname__}'>" if isinstance(hint, type) else repr(hint)
        parts = [f"name={self.name!r}", f"type_hint={shown}"]
        for f in fields(self)[2:]:
            value = getattr(self, f.name)
            if value not in (None, "") or f.name == "default_creation_method":
                parts.append(f"{f.name}={value!r}")
        return "ComponentSpec(" + ", ".join(parts) + ")"


@dataclass(frozen=True)
class ConfigSpec:
    """A pipeline-level setting blocks read as ``components.<name>`` (e.g. ``force_zeros_for_empty_prompt``)."""

    name: str
    default: Any = None
    description: str | None = field(default=None, compare=False)
