"""Several ControlNets acting together (``MultiControlNetModel``): each reads its own control image at its
own scale, and their residuals are summed before they reach the UNet."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..errors import AdapterError, MissingFileError
from .controlnet import ControlNetModel, ControlNetOutput


def _folder(base: str | os.PathLike, index: int) -> Path:
    """diffusers' layout: the first ControlNet in ``base``, the others in ``base_1``, ``base_2``, ..."""
    return Path(f"{base}_{index}" if index else base)


class MultiControlNetModel(nn.Module):
    """A list of ControlNets (``nets``) with the forward of one ControlNet, except that ``controlnet_cond``
    and ``conditioning_scale`` hold one entry per ControlNet.

    Args:
        controlnets: The ControlNets, in the order of their control images.

    Raises:
        AdapterError: ``controlnets`` is empty.
    """

    def __init__(self, controlnets: Sequence[ControlNetModel]):
        super().__init__()
        if len(controlnets) == 0:
            raise AdapterError("MultiControlNetModel needs at least one ControlNet")
        self.nets = nn.ModuleList(controlnets)

    @property
    def dtype(self) -> torch.dtype:
        """The first ControlNet's dtype."""
        return self.nets[0].dtype

    @property
    def device(self) -> torch.device:
        """The first ControlNet's device."""
        return self.nets[0].device

    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | float | int,
        encoder_hidden_states: torch.Tensor,
        controlnet_cond: Sequence[torch.Tensor],
        conditioning_scale: Sequence[float] | float = 1.0,
        class_labels: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        added_cond_kwargs: dict[str, torch.Tensor] | None = None,
        cross_attention_kwargs: dict[str, Any] | None = None,
        guess_mode: bool = False,
        return_dict: bool = True,
    ) -> ControlNetOutput | tuple[tuple[torch.Tensor, ...], torch.Tensor]:
        """The sum of every ControlNet's residuals; the arguments are those of :meth:`ControlNetModel.forward`.

        Args:
            controlnet_cond: One control image per ControlNet.
            conditioning_scale: One scale per ControlNet, or one number for all.

        Raises:
            AdapterError: ``controlnet_cond`` is not a list, or it or ``conditioning_scale`` does not have one entry
                per ControlNet.
        """
        count = len(self.nets)
        if isinstance(controlnet_cond, torch.Tensor):
            # zip would iterate over the batch and hand each ControlNet one unbatched image.
            raise AdapterError(f"MultiControlNetModel needs controlnet_cond as a list of {count} tensors, got one tensor")
        scales = [conditioning_scale] * count if isinstance(conditioning_scale, (int, float)) else list(conditioning_scale)
        for name, values in (("controlnet_cond", controlnet_cond), ("conditioning_scale", scales)):
            if len(values) != count:
                raise AdapterError(f"MultiControlNetModel has {count} ControlNets; {name} has {len(values)} entries")
        shared = dict(
            class_labels=class_labels, timestep_cond=timestep_cond, attention_mask=attention_mask,
            added_cond_kwargs=added_cond_kwargs, cross_attention_kwargs=cross_attention_kwargs, guess_mode=guess_mode,
        )
        down, mid = None, None
        for net, cond, scale in zip(self.nets, controlnet_cond, scales):
            net_down, net_mid = net(sample, timestep, encoder_hidden_states, cond, scale, return_dict=False, **shared)
            down = net_down if down is None else tuple(a + b for a, b in zip(down, net_down))
            mid = net_mid if mid is None else mid + net_mid
        return ControlNetOutput(down, mid) if return_dict else (down, mid)

    def save_pretrained(self, save_directory: str | os.PathLike, variant: str | None = None,
                        max_shard_size: int | str | None = None) -> list[Path]:
        """Save the ControlNets as diffusers does: the first in ``save_directory``, the others in
        ``save_directory_1``, ``save_directory_2``, ...

        Returns:
            The folders, one per ControlNet.
        """
        folders = [_folder(save_directory, index) for index in range(len(self.nets))]
        for net, folder in zip(self.nets, folders):
            net.save_pretrained(folder, variant=variant, max_shard_size=max_shard_size)
        return folders

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, variant: str | None = None,
                        torch_dtype: torch.dtype | None = None) -> "MultiControlNetModel":
        """Load the ControlNets :meth:`save_pretrained` wrote: ``path``, then ``path_1``, ``path_2``, ... while
        those folders exist (local folders only).

        Raises:
            MissingFileError: ``path`` is not a folder.
        """
        if not Path(path).is_dir():
            raise MissingFileError.not_found([str(path)], what="ControlNet folder")
        nets, index = [], 0
        while (folder := _folder(path, index)).is_dir():
            nets.append(ControlNetModel.from_pretrained(folder, variant=variant, torch_dtype=torch_dtype))
            index += 1
        return cls(nets)
