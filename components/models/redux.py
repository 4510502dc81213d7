"""FLUX.1 Redux's image embedder (``ReduxImageEncoder``, diffusers' layout and Black Forest Labs' weight names): a
two-layer MLP that maps SigLIP's image tokens to the T5 width, so that a picture can stand beside (or in place of)
the prompt's T5 tokens."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..config import register_to_config
from .modeling import ModelMixin
from .outputs import ModelOutput


@dataclass
class ReduxImageEncoderOutput(ModelOutput):
    """``image_embeds``: ``(batch, image tokens, txt_in_features)``."""

    image_embeds: torch.Tensor


class ReduxImageEncoder(ModelMixin):
    """``redux_down(silu(redux_up(x)))``.

    Args:
        redux_dim: the width of the image encoder's tokens (SigLIP so400m: 1152).
        txt_in_features: the width of the text tokens the transformer reads (T5-XXL: 4096).
    """

    @register_to_config
    def __init__(self, redux_dim: int = 1152, txt_in_features: int = 4096):
        super().__init__()
        self.redux_up = nn.Linear(redux_dim, txt_in_features * 3)
        self.redux_down = nn.Linear(txt_in_features * 3, txt_in_features)

    def forward(self, x: torch.Tensor, return_dict: bool = True):
        embeds = self.redux_down(F.silu(self.redux_up(x)))
        return ReduxImageEncoderOutput(image_embeds=embeds) if return_dict else (embeds,)
