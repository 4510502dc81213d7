"""The KL-regularised autoencoder of latent diffusion (``AutoencoderKL``: SD 1.x / 2.x / SDXL VAEs)."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from ..config import register_to_config
from .attention import LEGACY_ATTENTION_KEYS, AttentionProcessorMixin
from .distributions import DiagonalGaussianDistribution
from .modeling import ModelMixin, runs_forward_hooks
from .outputs import AutoencoderKLOutput, DecoderOutput
from .vae import Decoder, Encoder


def _blend_v(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """Fade the top ``extent`` rows of ``b`` in from the bottom rows of ``a`` (in place; returns ``b``)."""
    extent = min(a.shape[2], b.shape[2], extent)
    for y in range(extent):
        b[:, :, y, :] = a[:, :, -extent + y, :] * (1 - y / extent) + b[:, :, y, :] * (y / extent)
    return b


def _blend_h(a: torch.Tensor, b: torch.Tensor, extent: int) -> torch.Tensor:
    """Fade the left ``extent`` columns of ``b`` in from the right columns of ``a`` (in place; returns ``b``)."""
    extent = min(a.shape[3], b.shape[3], extent)
    for x in range(extent):
        b[:, :, :, x] = a[:, :, :, -extent + x] * (1 - x / extent) + b[:, :, :, x] * (x / extent)
    return b


def tiled_apply(fn: Callable, x: torch.Tensor, tile_in: int, tile_out: int, overlap: float) -> torch.Tensor:
    """Apply ``fn`` (mapping ``tile_in`` tiles to ``tile_out`` tiles) to overlapping tiles of ``x`` and blend the
    seams linearly, as diffusers' tiled VAE does (same tiles, same blending order)."""
    stride = int(tile_in * (1 - overlap))
    extent = int(tile_out * overlap)
    limit = tile_out - extent
    rows = [
        [fn(x[:, :, i : i + tile_in, j : j + tile_in]) for j in range(0, x.shape[3], stride)]
        for i in range(0, x.shape[2], stride)
    ]
    out_rows = []
    for i, row in enumerate(rows):
        out_row = []
        for j, tile in enumerate(row):
            if i > 0:
                tile = _blend_v(rows[i - 1][j], tile, extent)
            if j > 0:
                tile = _blend_h(row[j - 1], tile, extent)
            out_row.append(tile[:, :, :limit, :limit])
        out_rows.append(torch.cat(out_row, dim=3))
    return torch.cat(out_rows, dim=2)


class AutoencoderKL(ModelMixin, AttentionProcessorMixin):
    """VAE with a diagonal-Gaussian posterior (Rombach et al. 2022, "High-Resolution Image Synthesis with
    Latent Diffusion Models"), with diffusers' config keys and weight names.

    Pipelines scale latents as ``(z - shift_factor) * scaling_factor`` before diffusion and undo it before
    :meth:`decode`; ``force_upcast`` says the VAE must run in float32 (SDXL's VAE overflows in float16).
    """

    legacy_key_renames = LEGACY_ATTENTION_KEYS

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: Sequence[str] = ("DownEncoderBlock2D",),
        up_block_types: Sequence[str] = ("UpDecoderBlock2D",),
        block_out_channels: Sequence[int] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 4,
        norm_num_groups: int = 32,
        sample_size: int | Sequence[int] = 32,
        scaling_factor: float = 0.18215,
        shift_factor: float | None = None,
        latents_mean: Sequence[float] | None = None,
        latents_std: Sequence[float] | None = None,
        force_upcast: bool = True,
        use_quant_conv: bool = True,
        use_post_quant_conv: bool = True,
        mid_block_add_attention: bool = True,
    ):
        super().__init__()
        common = dict(block_out_channels=block_out_channels, layers_per_block=layers_per_block, act_fn=act_fn,
                      norm_num_groups=norm_num_groups, mid_block_add_attention=mid_block_add_attention)
        self.encoder = Encoder(in_channels, latent_channels, down_block_types, double_z=True, **common)
        self.decoder = Decoder(latent_channels, out_channels, up_block_types, **common)
        self.quant_conv = nn.Conv2d(2 * latent_channels, 2 * latent_channels, 1) if use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(latent_channels, latent_channels, 1) if use_post_quant_conv else None
        self.use_slicing = False
        self.use_tiling = False
        size = sample_size[0] if isinstance(sample_size, (list, tuple)) else sample_size
        self.tile_sample_min_size = size
        self.tile_latent_min_size = int(size / (2 ** (len(block_out_channels) - 1)))
        self.tile_overlap_factor = 0.25

    @classmethod
    def from_single_file(cls, path, config, torch_dtype=None, revision=None) -> "AutoencoderKL":
        """A VAE from one file: alone in the original layout (``vae-ft-mse-840000-ema-pruned.safetensors``,
        ``sdxl_vae.safetensors``, FLUX.1's ``ae.safetensors``), a full checkpoint's, or diffusers' layout; ``config``
        is its config, or a repo / folder with ``vae/config.json`` (the file cannot give the latents' scaling).
        See :func:`diffblocks.components.checkpoints.load_vae_file`."""
        from ..checkpoints import load_vae_file

        return load_vae_file(path, config, torch_dtype=torch_dtype, revision=revision)

    def enable_slicing(self) -> None:
        """Encode and decode batches one image at a time (same results, less peak memory)."""
        self.use_slicing = True

    def disable_slicing(self) -> None:
        """Encode and decode whole batches at once."""
        self.use_slicing = False

    def enable_tiling(self) -> None:
        """Encode and decode images larger than ``sample_size`` in overlapping tiles blended at the seams
        (bounded memory; results differ slightly from untiled ones near the seams)."""
        self.use_tiling = True

    def disable_tiling(self) -> None:
        """Encode and decode whole images."""
        self.use_tiling = False

    def _encode_moments(self, x: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(x.shape[-2:]) > self.tile_sample_min_size:
            return tiled_apply(self._encode_tile, x, self.tile_sample_min_size, self.tile_latent_min_size,
                               self.tile_overlap_factor)
        return self._encode_tile(x)

    def _encode_tile(self, x: torch.Tensor) -> torch.Tensor:
        moments = self.encoder(x)
        return self.quant_conv(moments) if self.quant_conv is not None else moments

    def _decode_latents(self, z: torch.Tensor) -> torch.Tensor:
        if self.use_tiling and max(z.shape[-2:]) > self.tile_latent_min_size:
            return tiled_apply(self._decode_tile, z, self.tile_latent_min_size, self.tile_sample_min_size,
                               self.tile_overlap_factor)
        return self._decode_tile(z)

    def _decode_tile(self, z: torch.Tensor) -> torch.Tensor:
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z)

    @runs_forward_hooks
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple:
        """The posterior over latents of images ``x`` (``(batch, in_channels, H, W)`` in [-1, 1]).

        Returns:
            :class:`AutoencoderKLOutput` whose ``latent_dist`` is a :class:`DiagonalGaussianDistribution`
            (``sample(generator)``, ``mode()``, ``mean``, ``std``); a 1-tuple when ``return_dict`` is False.
        """
        if self.use_slicing and x.shape[0] > 1:
            moments = torch.cat([self._encode_moments(part) for part in x.split(1)])
        else:
            moments = self._encode_moments(x)
        posterior = DiagonalGaussianDistribution(moments)
        return AutoencoderKLOutput(latent_dist=posterior) if return_dict else (posterior,)

    @runs_forward_hooks
    def decode(self, z: torch.Tensor, return_dict: bool = True, generator=None) -> DecoderOutput | tuple:
        """Images from (unscaled) latents ``z``; ``generator`` is accepted for API parity and unused.

        Returns:
            :class:`DecoderOutput` with ``sample`` ``(batch, out_channels, H, W)``; a 1-tuple when ``return_dict``
            is False.
        """
        if self.use_slicing and z.shape[0] > 1:
            images = torch.cat([self._decode_latents(part) for part in z.split(1)])
        else:
            images = self._decode_latents(z)
        return DecoderOutput(sample=images) if return_dict else (images,)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple:
        """Encode then decode ``sample`` (through a posterior sample, or its mode)."""
        posterior = self.encode(sample).latent_dist
        z = posterior.sample(generator=generator) if sample_posterior else posterior.mode()
        images = self.decode(z).sample
        return DecoderOutput(sample=images) if return_dict else (images,)
