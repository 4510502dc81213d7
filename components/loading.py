"""Loading one component from a spec: our classes for diffusers-format parts, transformers' as they are.

Nothing here runs code from a repo unless told to: every transformers class (models, ``Auto*`` classes,
tokenizers, processors) gets ``trust_remote_code`` explicitly, False unless the caller passed
``trust_remote_code=True``, so transformers never asks on the terminal.

Loading is quiet: transformers' own progress bars ("Loading weights") are off while our loads run (in the
loading thread only, through transformers' tqdm hook); its warnings are kept.
"""

from __future__ import annotations

import inspect
import json
import threading
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Iterator

from .errors import (
    ComponentLoadError,
    ConfigError,
    UnknownComponentClassError,
    UnsupportedComponentError,
)
from .files import try_resolve_file
from .registry import resolve_class

_CONFIG_FILES = ("config.json", "scheduler_config.json", "guider_config.json", "preprocessor_config.json")


def _read_config(path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError.unreadable(str(path), err) from err


def _class_named_in(filename: str, config: dict[str, Any]) -> Any:
    """The class a component config names: ``_class_name`` (diffusers format, our classes), else a
    transformers ``config.json``: its ``architectures`` class, or transformers' AutoModel by ``model_type``."""
    if "_class_name" in config:
        return resolve_class("diffusers", config["_class_name"])
    if filename != "config.json":
        return None
    for name in config.get("architectures") or []:
        try:
            return resolve_class("transformers", str(name))
        except UnsupportedComponentError:  # not a class this transformers has: its AutoModel may know the type
            continue
    if "model_type" in config or "auto_map" in config:
        import transformers

        return transformers.AutoModel  # it resolves model_type (or, if trusted, the repo's auto_map) itself
    return None


def class_from_config(repo, subfolder: str | None = None, revision: str | None = None, name: str | None = None) -> Any:
    """The class that loads the component in ``repo``/``subfolder``, read from its own config file.

    Raises:
        UnknownComponentClassError: no config file there names a class.
        UnsupportedComponentError: the config names a class diffblocks cannot load.
    """
    for filename in _CONFIG_FILES:
        path = try_resolve_file(repo, filename, subfolder=subfolder or None, revision=revision)
        if path is None:
            continue
        cls = _class_named_in(filename, _read_config(path))
        if cls is not None:
            return cls
    where = "/".join([str(repo)] + ([subfolder] if subfolder else []))
    raise UnknownComponentClassError.in_folder(name or subfolder or str(repo), where, _CONFIG_FILES)


def _accepted(loader, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The kwargs a ``from_pretrained`` takes (all of them if it takes ``**kwargs``)."""
    params = inspect.signature(loader).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def _is_transformers(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "transformers"


def _is_model(cls: type) -> bool:
    """A class whose ``from_pretrained`` takes ``torch_dtype``: an ``nn.Module`` or a transformers AutoModel."""
    import torch

    if issubclass(cls, torch.nn.Module):
        return True
    if not _is_transformers(cls):
        return False
    from transformers.models.auto.auto_factory import _BaseAutoModelClass

    return issubclass(cls, _BaseAutoModelClass)


def _class_of(spec) -> type:
    from .auto_model import AutoModel

    hint = spec.type_hint
    if isinstance(hint, type) and hint is not AutoModel:
        return hint
    return class_from_config(spec.repo, spec.subfolder or None, spec.revision, name=spec.name)


def load_component(spec, **kwargs: Any) -> Any:
    """``type_hint.from_pretrained(repo, subfolder=..., variant=..., revision=..., **kwargs)``; a spec without
    a type_hint (or with ``AutoModel``) loads the class its config file names.

    ``trust_remote_code`` is given to transformers classes only, and is True only when passed as True.
    """
    cls = _class_of(spec)
    if not hasattr(cls, "from_pretrained"):
        raise ComponentLoadError(f"component '{spec.name}': {cls.__name__} has no from_pretrained to load it with")
    module_kwargs = dict(kwargs)
    trusted = module_kwargs.pop("trust_remote_code", False) is True
    if not _is_model(cls) or module_kwargs.get("torch_dtype", 0) is None:
        module_kwargs.pop("torch_dtype", None)
    if _is_transformers(cls):
        module_kwargs["trust_remote_code"] = trusted
    options = {"subfolder": spec.subfolder or None, "revision": spec.revision}
    if spec.variant is not None:
        options["variant"] = spec.variant
    options = {k: v for k, v in options.items() if v is not None}
    with quiet_transformers():
        return cls.from_pretrained(spec.repo, **_accepted(cls.from_pretrained, {**options, **module_kwargs}))


# --- transformers' progress bars, off during our loads -------------------------------------------------

_quiet: ContextVar[bool] = ContextVar("diffblocks_quiet_transformers", default=False)
_hook_lock = threading.Lock()
_hook_state = {"installed": False, "depth": 0, "was_enabled": True}


def _quiet_hook(previous):
    """A tqdm hook for transformers: bars made inside :func:`quiet_transformers` are disabled."""
    def hook(factory, args, kwargs):
        if _quiet.get():
            kwargs = {**kwargs, "disable": True}
        return previous(factory, args, kwargs) if previous is not None else factory(*args, **kwargs)

    return hook


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """No transformers progress bars in this thread while the block runs (other threads keep theirs).

    Uses transformers' ``set_tqdm_hook`` (installed once, chaining any hook set before). Older transformers
    without it get ``disable_progress_bar()`` for the outermost of nested loads, restored afterwards.
    """
    from transformers.utils import logging as tf_logging

    if not hasattr(tf_logging, "set_tqdm_hook"):
        with _globally_quiet(tf_logging):
            yield
        return
    with _hook_lock:
        if not _hook_state["installed"]:
            tf_logging.set_tqdm_hook(_quiet_hook(tf_logging.set_tqdm_hook(None)))
            _hook_state["installed"] = True
    token = _quiet.set(True)
    try:
        yield
    finally:
        _quiet.reset(token)


@contextmanager
def _globally_quiet(tf_logging) -> Iterator[None]:
    with _hook_lock:
        if _hook_state["depth"] == 0:
            _hook_state["was_enabled"] = tf_logging.is_progress_bar_enabled()
            tf_logging.disable_progress_bar()
        _hook_state["depth"] += 1
    try:
        yield
    finally:
        with _hook_lock:
            _hook_state["depth"] -= 1
            if _hook_state["depth"] == 0 and _hook_state["was_enabled"]:
                tf_logging.enable_progress_bar()
