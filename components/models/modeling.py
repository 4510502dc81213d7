"""``ModelMixin``: config-backed ``nn.Module`` that loads and saves the diffusers folder layout
(``config.json`` + ``diffusion_pytorch_model[.variant].safetensors``, sharded or not), locally or from the Hub.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
from pathlib import Path
from typing import Any, Callable, ClassVar, Mapping

import torch
from accelerate import init_empty_weights
from torch import nn

from ..errors import ConfigError, WeightsMismatchError
from ..config import ConfigMixin
from ..config import staged_files
from .weights import find_weight_files, read_weights, remove_stale_weights, stage_weights


# The initialisers nn.Linear, nn.Conv2d, the norms and nn.Embedding call in reset_parameters, captured at
# import so that restoring them after a patch always restores the real ones.
_INIT_FUNCTIONS = {
    name: getattr(torch.nn.init, name)
    for name in ("uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "xavier_uniform_",
                 "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")
}


def _keep(tensor, *args, **kwargs):
    return tensor


@contextlib.contextmanager
def empty_weights():
    """Build modules with parameters on the meta device and without running their random initialisers
    (the values are about to be replaced by loaded ones). Like accelerate's ``init_empty_weights``, which it
    uses, this patches module-level functions: do not build other models in other threads meanwhile."""
    for name in _INIT_FUNCTIONS:
        setattr(torch.nn.init, name, _keep)
    try:
        with init_empty_weights():
            yield
    finally:
        for name, function in _INIT_FUNCTIONS.items():
            setattr(torch.nn.init, name, function)


def runs_forward_hooks(method: Callable) -> Callable:
    """Make a method other than ``forward`` (``encode``, ``decode``) run the accelerate hook's ``pre_forward``
    first, so that offloading hooks put the weights on the execution device for it too; an auto-offload hook
    also keeps the model from being moved by another thread until the method returns (its ``running``)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        hook = getattr(self, "_hf_hook", None)
        running = getattr(hook, "running", None)
        with running(self) if running is not None else contextlib.nullcontext():
            if hook is not None and hasattr(hook, "pre_forward"):
                hook.pre_forward(self)
            return method(self, *args, **kwargs)

    return wrapper


class ModelMixin(nn.Module, ConfigMixin):
    """Base of diffblocks' models: ``config`` (from the init arguments), ``dtype``, ``device``,
    ``from_pretrained`` and ``save_pretrained`` in the diffusers layout.

    Subclasses decorate ``__init__`` with :func:`~diffblocks.components.config.register_to_config`.
    ``legacy_key_renames`` maps old weight-name suffixes to current ones (applied only to keys the model
    does not have).
    """

    config_name: ClassVar[str] = "config.json"
    legacy_key_renames: ClassVar[dict[str, str]] = {}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the first floating-point parameter (float32 for a model without any)."""
        floats = (p.dtype for p in self.parameters() if p.is_floating_point())
        return next(floats, torch.float32)

    @property
    def device(self) -> torch.device:
        """The device of the first parameter (CPU for a model without any)."""
        return next((p.device for p in self.parameters()), torch.device("cpu"))

    @classmethod
    def from_pretrained(
        cls,
        path_or_repo: str | os.PathLike,
        subfolder: str | None = None,
        variant: str | None = None,
        revision: str | None = None,
        torch_dtype: torch.dtype | None = None,
    ):
        """Build the model from ``config.json`` and fill it with the weights, without a second copy of them.

        The model is created on the meta device and its tensors are replaced by the memory-mapped file
        tensors (converted only when their dtype differs from the target). It is returned in eval mode, on CPU.

        Args:
            path_or_repo: A local folder or a Hub repo id (downloaded through huggingface_hub's cache;
                ``HF_HUB_OFFLINE=1`` keeps to the cache).
            subfolder: The model's folder inside it (e.g. ``"unet"``).
            variant: Weight variant, e.g. ``"fp16"`` for ``diffusion_pytorch_model.fp16.safetensors``.
            revision: Hub revision.
            torch_dtype: Floating-point dtype of the parameters; default ``torch.get_default_dtype()``.

        Raises:
            MissingFileError: no config or weights file; the message names every path looked for.
            CorruptedFileError: a weights file is truncated or corrupted.
            WeightsMismatchError: the weights miss keys the model has, have keys it lacks, or differ in shape.
            ConfigError: the config is unreadable or describes another class.
        """
        config = cls.load_config(path_or_repo, subfolder=subfolder, revision=revision)
        source = "/".join([str(path_or_repo)] + ([subfolder] if subfolder else []))
        cls._check_class_name(config, source)
        files = find_weight_files(path_or_repo, subfolder=subfolder, variant=variant, revision=revision)
        with empty_weights():
            model = cls.from_config(config)
        dtype = torch_dtype or torch.get_default_dtype()
        model.load_weights(read_weights(files, dtype), torch_dtype=dtype, source=source)
        return model.eval()

    @classmethod
    def _check_class_name(cls, config: Mapping[str, Any], source: str) -> None:
        name = config.get("_class_name")
        if name is not None and name != cls.__name__:
            raise ConfigError(f"{source}/{cls.config_name} describes a {name}, not a {cls.__name__}")

    def load_weights(
        self, state_dict: dict[str, torch.Tensor], torch_dtype: torch.dtype | None = None, source: str = ""
    ) -> None:
        """Replace every parameter and buffer by the tensor of the same name (``load_state_dict(assign=True)``).

        Floating-point tensors are converted to ``torch_dtype`` (default ``torch.get_default_dtype()``) when
        they differ. Works on a model built on the meta device.

        Raises:
            WeightsMismatchError: missing or unexpected keys (the first few of each and their counts), or a
                shape that differs (naming the key).
        """
        dtype = torch_dtype or torch.get_default_dtype()
        where = f"{type(self).__name__} ({source})" if source else type(self).__name__
        state_dict = self._rename_legacy_keys(state_dict)
        expected = self.state_dict()
        missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
        if missing or unexpected:
            raise WeightsMismatchError.keys(where, sorted(missing), sorted(unexpected))
        for key, tensor in state_dict.items():
            if tensor.shape != expected[key].shape:
                raise WeightsMismatchError.shape(where, key, tuple(expected[key].shape), tuple(tensor.shape))
            if tensor.is_floating_point() and tensor.dtype != dtype:
                state_dict[key] = tensor.to(dtype)
        self.load_state_dict(state_dict, strict=True, assign=True)
        self._check_materialized(where)

    def _rename_legacy_keys(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.legacy_key_renames:
            return dict(state_dict)
        known = set(self.state_dict())
        renamed = {}
        for key, tensor in state_dict.items():
            if key not in known:
                for old, new in self.legacy_key_renames.items():
                    if key.endswith(old) and key[: -len(old)] + new in known:
                        key = key[: -len(old)] + new
                        break
            renamed[key] = tensor
        return renamed

    def _check_materialized(self, where: str) -> None:
        """Buffers outside the state dict were computed at init (only parameters start on the meta device);
        anything still on the meta device was neither loaded nor computed."""
        tensors = itertools.chain(self.named_parameters(), self.named_buffers())
        empty = [name for name, tensor in tensors if tensor.is_meta]
        if empty:
            raise WeightsMismatchError.keys(where, empty, [])

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
    ) -> Path:
        """Write ``config.json`` and the weights (safetensors; sharded with an index above ``max_shard_size``,
        default 10GB) in the layout diffusers reads.

        The files are written beside the old ones under temporary names and swapped in together once all
        are written; old weight files the new layout does not use are removed only then. A save that fails
        midway leaves the folder as it was.

        Args:
            save_directory: Folder to write into (created if needed).
            variant: Weight variant in the file names (``diffusion_pytorch_model.<variant>.safetensors``).
            max_shard_size: Largest shard, as bytes or a string like ``"5GB"``.

        Returns:
            The folder.
        """
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        with staged_files(directory) as staged:
            names = stage_weights(self.state_dict(), staged, variant=variant, max_shard_size=max_shard_size)
            staged.write_text(self.config_name, self.config_json())
        remove_stale_weights(directory, variant, keep=set(names))
        return directory
