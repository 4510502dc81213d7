"""AutoModel: load a component whose class is read from its own config file.

``AutoModel.from_pretrained(repo, subfolder="unet")`` reads ``unet/config.json`` (``_class_name``: one of
diffblocks' models), a scheduler folder's ``scheduler_config.json``, or a transformers ``config.json``
(``architectures``, else ``model_type`` through transformers' own AutoModel), and loads that class.
As a ``ComponentSpec`` type_hint it means the same: ``ComponentSpec("unet", AutoModel, repo=..., subfolder="unet")``.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import NotInstantiableError


class _AnyComponent(type):
    """``isinstance(obj, AutoModel)`` holds for whatever AutoModel can load (models and schedulers), so a spec
    typed AutoModel accepts a loaded component in ``update_components``."""

    def __instancecheck__(cls, obj: Any) -> bool:
        import torch

        from .schedulers.base import SchedulerMixin

        return isinstance(obj, (torch.nn.Module, SchedulerMixin))


class AutoModel(metaclass=_AnyComponent):
    """Loads the class a component folder's config names; never instantiated itself."""

    def __init__(self, *args: Any, **kwargs: Any):
        raise NotInstantiableError.auto_model()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, subfolder: str | None = None,
                        revision: str | None = None, variant: str | None = None, torch_dtype=None,
                        trust_remote_code: bool = False, **kwargs: Any) -> Any:
        """Load the component in ``pretrained_model_name_or_path``/``subfolder`` with the class its config names.

        Args:
            pretrained_model_name_or_path: a local folder or a Hub repo id.
            subfolder: the component's folder in it (``"unet"``, ``"text_encoder"``, ``"scheduler"``).
            revision, variant: as for the class's own ``from_pretrained``.
            torch_dtype: the dtype of a model's weights (ignored for schedulers).
            trust_remote_code: let a transformers repo run its own code (``auto_map``); False refuses it.
            **kwargs: passed to the class's ``from_pretrained``.

        Returns:
            The loaded component (it remembers where it came from, as ``ComponentSpec.load`` results do).

        Raises:
            UnknownComponentClassError: no config file in the folder names a class.
            UnsupportedComponentError: the config names a class diffblocks cannot load.
        """
        from .loading import class_from_config
        from .spec import ComponentSpec

        repo = os.fspath(pretrained_model_name_or_path)
        name = subfolder or os.path.basename(repo.rstrip("/")) or repo
        spec = ComponentSpec(name=name, repo=repo, subfolder=subfolder or "", variant=variant, revision=revision)
        spec.type_hint = class_from_config(repo, subfolder, revision, name=name)
        if torch_dtype is not None:
            kwargs["torch_dtype"] = torch_dtype
        return spec.load(trust_remote_code=trust_remote_code, **kwargs)
