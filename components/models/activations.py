"""Activation functions by config name, and the gated projections used in transformer feed-forwards."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError

_ACTIVATIONS = {"swish": nn.SiLU, "silu": nn.SiLU, "mish": nn.Mish, "gelu": nn.GELU, "relu": nn.ReLU}


def get_activation(name: str, owner: str = "model") -> nn.Module:
    """A fresh activation module for a config name (``"silu"``, ``"swish"``, ``"mish"``, ``"gelu"``, ``"relu"``).

    Raises:
        ConfigError: the name is not one of those.
    """
    cls = _ACTIVATIONS.get(str(name).lower())
    if cls is None:
        raise ConfigError.bad_value(owner, "act_fn", f"one of {sorted(_ACTIVATIONS)}", name)
    return cls()


class GELU(nn.Module):
    """A linear projection followed by GELU (``approximate="tanh"`` for the tanh form)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none", bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)
        self.approximate = approximate

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(hidden_states), approximate=self.approximate)


class GEGLU(nn.Module):
    """Gated GELU unit (Shazeer 2020, "GLU Variants Improve Transformer"): ``a * gelu(b)`` with
    ``[a, b] = proj(x)`` split in halves along the last dimension."""

    def __init__(self, dim_in: int, dim_out: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states, gate = self.proj(hidden_states).chunk(2, dim=-1)
        return hidden_states * F.gelu(gate)


class ApproximateGELU(nn.Module):
    """A linear projection followed by the sigmoid approximation ``x * sigmoid(1.702 x)`` of GELU."""

    def __init__(self, dim_in: int, dim_out: int, bias: bool = True):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out, bias=bias)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        hidden_states = self.proj(hidden_states)
        return hidden_states * torch.sigmoid(1.702 * hidden_states)


_GATES = {
    "geglu": GEGLU,
    "gelu": GELU,
    "gelu-approximate": lambda i, o, bias=True: GELU(i, o, approximate="tanh", bias=bias),
    "geglu-approximate": ApproximateGELU,
}


class FeedForward(nn.Module):
    """The transformer MLP: ``net = [activation projection, Dropout, Linear]`` (diffusers' key layout).

    Args:
        dim: Input and output width.
        mult: Inner width as a multiple of ``dim``.
        dropout: Dropout after the activation.
        activation_fn: ``"geglu"`` (Stable Diffusion), ``"gelu"``, ``"gelu-approximate"`` or ``"geglu-approximate"``.
    """

    def __init__(self, dim: int, mult: int = 4, dropout: float = 0.0, activation_fn: str = "geglu", bias: bool = True):
        super().__init__()
        if activation_fn not in _GATES:
            raise ConfigError.bad_value("FeedForward", "activation_fn", f"one of {sorted(_GATES)}", activation_fn)
        inner_dim = int(dim * mult)
        self.net = nn.ModuleList(
            [_GATES[activation_fn](dim, inner_dim, bias=bias), nn.Dropout(dropout), nn.Linear(inner_dim, dim, bias=bias)]
        )

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        for module in self.net:
            hidden_states = module(hidden_states)
        return hidden_states
