"""Loading one component from a spec: our classes for diffusers-format parts, transformers' as they are.

Nothing here runs code from a repo unless told to: every transformers class (models, ``Auto*`` classes,
tokenizers, processors) gets ``trust_remote_code`` explicitly, False unless the caller passed
``trust_remote_code=True``, so transformers never asks on the terminal.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from ..modular_pipelines.errors import ComponentLoadError
from .files import try_resolve_file
from .registry import resolve_class

_CONFIG_FILES = ("config.json", "scheduler_config.json", "guider_config.json", "preprocessor_config.json")


def _class_from_files(spec) -> Any:
    """Guess the class from the component's own config when the spec has no type_hint."""
    for filename in _CONFIG_FILES:
        path = try_resolve_file(spec.repo, filename, subfolder=spec.subfolder or None, revision=spec.revision)
        if path is None:
            continue
        config = json.loads(path.read_text())
        if "_class_name" in config:
            return resolve_class("diffusers", config["_class_name"])
        if config.get("architectures"):
            return resolve_class("transformers", config["architectures"][0])
    raise ComponentLoadError(
        f"cannot tell which class component '{spec.name}' is: give the spec a type_hint "
        f"(no config naming a class in {spec.repo}/{spec.subfolder or ''})"
    )


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


def load_component(spec, **kwargs: Any) -> Any:
    """``type_hint.from_pretrained(repo, subfolder=..., variant=..., revision=..., **kwargs)``.

    ``trust_remote_code`` is given to transformers classes only, and is True only when passed as True.
    """
    cls = spec.type_hint if isinstance(spec.type_hint, type) else _class_from_files(spec)
    if not hasattr(cls, "from_pretrained"):
        raise ComponentLoadError(f"component '{spec.name}': {cls.__name__} has no from_pretrained to load it with")
    module_kwargs = dict(kwargs)
    trusted = module_kwargs.pop("trust_remote_code", False) is True
    if not _is_model(cls):
        module_kwargs.pop("torch_dtype", None)
    if _is_transformers(cls):
        module_kwargs["trust_remote_code"] = trusted
    options = {"subfolder": spec.subfolder or None, "revision": spec.revision}
    if spec.variant is not None:
        options["variant"] = spec.variant
    options = {k: v for k, v in options.items() if v is not None}
    return cls.from_pretrained(spec.repo, **_accepted(cls.from_pretrained, {**options, **module_kwargs}))
