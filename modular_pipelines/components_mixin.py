"""The component side of ModularPipeline: specs, loading, updating, devices.

Specs come from the blocks' ``expected_components`` and are overridden by the repo the pipeline was
initialised from. ``from_config`` components (guider, image processors) are created at init;
``from_pretrained`` ones load in :meth:`load_components`.
"""

from __future__ import annotations

import functools
import logging
import types
import typing
from typing import Any, Iterable

from ..components.spec import ComponentSpec
from ..components.errors import (ComponentLoadError, ComponentNotFoundError, ComponentTypeError, LoaderArgumentsError,
                                 UnsupportedComponentError)
from .params import type_name

logger = logging.getLogger("diffblocks")


class ComponentsMixin:
    """Holds ``_specs`` (name -> ComponentSpec), ``_components`` (name -> object or None) and config values."""

    def _init_components(self, repo, manager, collection, revision: str | None = None) -> None:
        from .hub import read_pipeline_specs

        self.__dict__["_components"] = {}
        self._specs = {s.name: s.copy() for s in self.blocks.expected_components}
        self._config_values = {c.name: c.default for c in self.blocks.expected_configs}
        self.components_manager = manager
        self.collection = collection
        self.pretrained_model_name_or_path = repo
        if repo is not None:
            repo_specs, repo_config = read_pipeline_specs(repo, self._specs, revision)
            for name, spec in repo_specs.items():
                if name in self._specs:
                    self._specs[name] = spec
            self._config_values.update({k: v for k, v in repo_config.items() if k in self._config_values})
        self._components.update({name: None for name in self._specs})
        for name, spec in list(self._specs.items()):
            if spec.default_creation_method == "from_config" and spec.type_hint is not None:
                component = spec.create()
                # the spec shows the whole config the component was made with, defaults included
                self._specs[name] = ComponentSpec.from_component(name, component)
                self._set_component(name, component)

    # --- attribute access ---------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        data = self.__dict__
        if name in data.get("_components", {}):
            return data["_components"][name]
        if name in data.get("_config_values", {}):
            return data["_config_values"][name]
        raise AttributeError(f"{type(self).__name__} has no attribute, component or config '{name}'")

    @property
    def components(self) -> dict[str, Any]:
        return dict(self._components)

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config_values)

    @property
    def component_names(self) -> list[str]:
        return list(self._specs)

    @property
    def null_component_names(self) -> list[str]:
        return [n for n in self._specs if self._components.get(n) is None]

    @property
    def pretrained_component_names(self) -> list[str]:
        return [n for n, s in self._specs.items() if s.default_creation_method == "from_pretrained"]

    @property
    def config_component_names(self) -> list[str]:
        return [n for n, s in self._specs.items() if s.default_creation_method == "from_config"]

    def get_component_spec(self, name: str) -> ComponentSpec:
        """A copy of the spec of ``name`` (edit it, then ``load()``/``create()`` or pass it to update_components)."""
        if name not in self._specs:
            raise ComponentNotFoundError.unknown_name(name, self._specs)
        return self._specs[name].copy()

    # --- changing components -----------------------------------------------------------------------
    def _set_component(self, name: str, component: Any) -> None:
        manager = self.components_manager
        if manager is not None and component is not None and hasattr(component, "__dict__"):
            manager.add(name, component, collection=self.collection)
        self._components[name] = component

    def _shared(self, spec: ComponentSpec) -> Any:
        """A component with this spec's load id already in the manager, if any."""
        manager = self.components_manager
        if manager is None or spec.repo is None:
            return None
        return manager.find_by_load_id(spec.load_id) if hasattr(manager, "find_by_load_id") else None

    def update_components(self, **components: Any) -> None:
        """Replace components by objects or specs (specs are created or loaded); config values too.

        An object must fit the type its spec expects (a subclass is fine, and so is any other member of the
        same kind: any scheduler for a scheduler, any guider for a guider, any torch module for a model);
        None unsets the component.

        Raises:
            ComponentNotFoundError: a name that is neither a component nor a config value.
            ComponentTypeError: an object of the wrong type (every refused value is listed, nothing changes).
        """
        for name in components:
            if name not in self._specs and name not in self._config_values:
                raise ComponentNotFoundError.unknown_name(name, list(self._specs) + list(self._config_values))
        refused = self._refused(components)
        if refused:  # checked before anything changes
            raise ComponentTypeError.wrong_type(refused)
        for name, value in components.items():
            if name in self._config_values:
                self._config_values[name] = value
                continue
            if isinstance(value, ComponentSpec):
                spec = value.copy()
                spec.name = name
                value = spec.create() if spec.default_creation_method == "from_config" else spec.load()
            self._announce_change(name, value)
            self._specs[name] = ComponentSpec.from_component(name, value) if value is not None else self._specs[name]
            self._set_component(name, value)

    def _refused(self, components: dict[str, Any]) -> list[tuple[str, str, Any]]:
        """(name, expected type, value) of each given object its spec's current type_hint does not admit."""
        refused = []
        for name, value in components.items():
            if name in self._config_values or isinstance(value, ComponentSpec):
                continue
            hint = self._specs[name].type_hint
            if not fits(hint, value):
                refused.append((name, _expected(hint), value))
        return refused

    def _announce_change(self, name: str, new: Any) -> None:
        """Log a swap. Routine ones (another scheduler or guider, a part made from a config instead of loaded
        from files, or the reverse) are INFO, in the design document's words; a model replaced by one of a
        class the blocks do not expect (the class they declare, else the one replaced) is a WARNING."""
        old, old_spec = self._components.get(name), self._specs[name]
        if new is None:
            return
        if old is not None and type(old) is not type(new):
            declared = next((s.type_hint for s in self.blocks.expected_components if s.name == name), None)
            expected = declared if isinstance(declared, type) else type(old)
            if _unexpected_model(expected, new):
                logger.warning("ModularPipeline.update_components: '%s' is now a %s, but the blocks expect a %s; "
                               "the blocks that use it may fail", name, type(new).__name__, type_name(expected))
            else:
                logger.info("ModularPipeline.update_components: adding %s with new type: %s, previous type: %s",
                            name, type(new).__name__, type(old).__name__)
        method = ComponentSpec.from_component(name, new).default_creation_method
        if method != old_spec.default_creation_method:
            logger.info("ModularPipeline.update_components: changing the default_creation_method of %s from %s to %s",
                        name, old_spec.default_creation_method, method)

    def load_components(self, names: str | Iterable[str] | None = None, torch_dtype=None, **kwargs: Any) -> None:
        """Load ``from_pretrained`` components (all not yet loaded, or ``names``).

        A keyword argument named after a component is a dict of arguments for that component's loader only
        (anything else is refused before loading); other keyword arguments go to every loader.
        A component that fails leaves the others loaded; one ComponentLoadError then lists each failure.
        """
        if names is None:
            names = [n for n in self.pretrained_component_names if self._specs[n].repo is not None]
        elif isinstance(names, str):
            names = [names]
        for name, value in kwargs.items():  # refused before anything loads
            if name in self._specs and not isinstance(value, dict):
                raise LoaderArgumentsError.not_a_dict(name, value)
        for_all = {k: v for k, v in kwargs.items() if k not in self._specs}
        if torch_dtype is not None:
            for_all.setdefault("torch_dtype", torch_dtype)
        failures: dict[str, BaseException] = {}
        for name in names:
            if name not in self._specs:
                raise ComponentNotFoundError.unknown_name(name, self._specs)
            spec = self._specs[name]
            own = kwargs.get(name, {})
            try:
                component = self._shared(spec) or spec.load(**{**for_all, **own})
            except Exception as err:  # collected and raised together below
                failures[name] = err
                continue
            self._set_component(name, component)
        if failures:
            loaded = [n for n in self._specs if self._components.get(n) is not None]
            raise ComponentLoadError.failed(failures, loaded) from next(iter(failures.values()))

    def load_single_file(self, path, torch_dtype=None, **kwargs: Any) -> None:
        """Load the models of an original Stable Diffusion checkpoint (one ``.safetensors`` file with the UNet, VAE
        and text encoders under CompVis / Stability's names, as A1111 and ComfyUI keep them), and every other
        ``from_pretrained`` component (tokenizers, scheduler, and a model the file lacks) as :meth:`load_components`
        does. The configs describing the file's models are those of the repo the pipeline was initialised from; the
        scheduler's prediction type follows the file where it tells (``checkpoints.sampling_settings``). With
        the configs shipped for the family (which hold no weights), a model the file lacks (a checkpoint shared
        without its VAE) stays unloaded: give it with ``update_components``.

        Raises:
            ComponentLoadError: the pipeline has no repo to read configs from.
            ConfigError: not an SD 1.x / 2.x / SDXL checkpoint (the message says what the file is).
            WeightsMismatchError: the file's models do not fit the repo's configs (another family or size).
        """
        from ..components.checkpoints import MODEL_PARTS, read_checkpoint, shipped_reference

        repo = self.pretrained_model_name_or_path
        if repo is None:
            raise ComponentLoadError("load_single_file needs the configs of a repo of the checkpoint's family: "
                                     "init_pipeline(repo) first (e.g. 'stable-diffusion-v1-5/stable-diffusion-v1-5')")
        models, changes = read_checkpoint(path, repo, torch_dtype=torch_dtype)
        models = {name: model for name, model in models.items() if name in self._specs}
        rest = [n for n in self.pretrained_component_names if n not in models and self._specs[n].repo is not None
                and not (n in MODEL_PARTS and shipped_reference(repo) is not None)]
        self.load_components(rest, torch_dtype=torch_dtype, **kwargs)
        scheduler = self._components.get("scheduler")
        if scheduler is not None and changes:  # the file's v-prediction, zero SNR, or SD 2.x base model
            models["scheduler"] = type(scheduler).from_config({**scheduler.config, **changes})
        self.update_components(**models)

    def unload_components(self, names: str | Iterable[str]) -> None:
        """Drop loaded components (specs are kept, so they can be loaded again)."""
        for name in [names] if isinstance(names, str) else names:
            if name not in self._specs:
                raise ComponentNotFoundError.unknown_name(name, self._specs)
            self._components[name] = None

    # --- devices -----------------------------------------------------------------------------------
    def _modules(self):
        import torch

        return [(n, c) for n, c in self._components.items() if isinstance(c, torch.nn.Module)]

    def to(self, device=None, dtype=None):
        """Move every model component; returns the pipeline."""
        for _, module in self._modules():
            module.to(device=device, dtype=dtype)
        return self

    @property
    def device(self):
        import torch

        for _, module in self._modules():
            for param in module.parameters():
                return param.device
        return torch.device("cpu")

    @property
    def dtype(self):
        import torch

        for _, module in self._modules():
            for param in module.parameters():
                return param.dtype
        return torch.float32


# --- what update_components accepts ----------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _kinds() -> tuple[type, ...]:
    """Base classes within which one component may stand in for another (imported on first use)."""
    import torch
    import transformers

    from ..components.schedulers.base import SchedulerMixin
    from ..guiders.base import BaseGuidance

    return (SchedulerMixin, BaseGuidance, torch.nn.Module, transformers.PreTrainedTokenizerBase,
            transformers.ImageProcessingMixin, transformers.FeatureExtractionMixin)


def _kind(cls: type) -> type | None:
    return next((base for base in _kinds() if issubclass(cls, base)), None)


def _members(hint: Any) -> tuple | None:
    """The alternatives of a union or tuple hint, or None for a single hint."""
    if isinstance(hint, tuple):
        return hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def _named_class(name: str) -> type | None:
    from ..components.registry import resolve_class

    for library in ("diffusers", "transformers"):
        try:
            return resolve_class(library, name)
        except UnsupportedComponentError:  # not a class that library has: try the next one
            continue
    return None


def fits(hint: Any, value: Any) -> bool:
    """Whether ``value`` may be the component whose spec has type ``hint`` (None: anything fits)."""
    if hint is None or hint is Any or value is None:
        return True
    members = _members(hint)
    if members is not None:
        return any(fits(member, value) for member in members)
    if isinstance(hint, str):
        name = hint.rsplit(".", 1)[-1]
        if any(cls.__name__ == name for cls in type(value).__mro__):
            return True
        hint = _named_class(name)
        return hint is not None and fits(hint, value)
    if not isinstance(hint, type):
        return True  # a typing construct we do not check
    kind = _kind(hint)
    return isinstance(value, hint) or (kind is not None and isinstance(value, kind))


def _unexpected_model(expected: type, new: Any) -> bool:
    """Whether ``new`` is a model not of the ``expected`` class: any torch module fits a model's spec, so this
    is allowed, but rarely meant. ``torch.compile`` wrappers are unwrapped."""
    import torch

    return isinstance(new, torch.nn.Module) and not isinstance(getattr(new, "_orig_mod", new), expected)


def _expected(hint: Any) -> str:
    """``hint`` as a message says it, with the kind any member of which is also accepted."""
    members = _members(hint)
    if members is not None:
        return " or ".join(_expected(m) for m in members)
    kind = _kind(hint) if isinstance(hint, type) else None
    if kind is None or kind is hint:
        return type_name(hint)
    root = kind.__module__.split(".")[0]
    shown = {"torch": "torch.nn.Module", "diffblocks": kind.__name__}.get(root, f"{root}.{kind.__name__}")
    return f"{type_name(hint)} (or any {shown})"
