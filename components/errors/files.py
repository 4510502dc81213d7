"""Errors of files, weights, configs, remote code and the Hub."""

from __future__ import annotations

from typing import Sequence

from ..formatting import format_value
from .base import DiffblocksError


class MissingFileError(DiffblocksError, FileNotFoundError):
    @classmethod
    def not_found(cls, looked_for: Sequence[str], what: str = "file") -> "MissingFileError":
        return cls(f"{what} not found; looked for: {', '.join(str(p) for p in looked_for)}")


class CorruptedFileError(DiffblocksError, OSError):
    @classmethod
    def unreadable(cls, path: str, cause: BaseException) -> "CorruptedFileError":
        return cls(f"cannot read weights file {path}: it is truncated or corrupted ({type(cause).__name__}: {cause})")

    @classmethod
    def bad_entry(cls, path: str, problem: str) -> "CorruptedFileError":
        """A safetensors header that contradicts itself or the file (``problem`` says how)."""
        return cls(f"cannot read weights file {path}: it is truncated or corrupted ({problem})")


class UnsafeFileError(DiffblocksError, ValueError):
    @classmethod
    def pickled_code(cls, path: str, name: str) -> "UnsafeFileError":
        """A pickled weights file that names ``name``: neither a tensor nor a training run's plain record."""
        return cls(f"refusing to read weights file {path}: its pickle calls {name}, which is not a tensor or a training "
                   "run's record, and unpickling it could run any code. If you trust the file, convert it to "
                   ".safetensors once (torch.load(path, weights_only=False), then safetensors.torch.save_file)")


class WeightsMismatchError(DiffblocksError, ValueError):
    @classmethod
    def keys(cls, model: str, missing: Sequence[str], unexpected: Sequence[str], limit: int = 5) -> "WeightsMismatchError":
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                shown = ", ".join(sorted(keys)[:limit])
                more = f", ... ({len(keys)} in all)" if len(keys) > limit else f" ({len(keys)})"
                parts.append(f"{label} keys: {shown}{more}")
        return cls(f"weights do not fit {model}: " + "; ".join(parts))

    @classmethod
    def shape(cls, model: str, key: str, expected: tuple, got: tuple) -> "WeightsMismatchError":
        return cls(f"weights do not fit {model}: '{key}' expects shape {tuple(expected)}, the file has {tuple(got)}")

    @classmethod
    def not_the_reference(cls, cause: "WeightsMismatchError", kind: str, repo: str) -> "WeightsMismatchError":
        """``cause``, for a checkpoint of ``kind`` (``"a Stable Diffusion 1.x"``) read with the configs shipped for
        its family (``repo``'s) since none were given: its model is another size or layout, so the configs of its
        own model are what to give."""
        error = cls(f"this is {kind} checkpoint of another size or layout than {repo}, whose configs (shipped with "
                    "diffblocks) are used when none are given: give the diffusers folder or Hub repo of its own model "
                    f"as 'config' (--config in the CLI). {cause}")
        error.input_name = "config"  # the input a node UI points at
        return error


class ConfigError(DiffblocksError, ValueError):
    @classmethod
    def bad_value(cls, owner: str, key: str, expected: str, value: object) -> "ConfigError":
        return cls(f"{owner}: config '{key}' expects {expected}, got {format_value(value)}")

    @classmethod
    def controlnet_base(cls, path: str, widths: Sequence[int], known: dict[str, int]) -> "ConfigError":
        """A ControlNet file whose base model its cross-attention ``widths`` do not tell (``known``: each shipped
        family's width)."""
        found = f"its cross-attention width is {', '.join(map(str, widths))}" if widths else "it has no cross-attention"
        error = cls(f"cannot tell which model the ControlNet file {path} is for: {found}, and the shipped configs' "
                    "are " + ", ".join(f"{width} ({family})" for family, width in known.items())
                    + "; give the base model's folder or Hub repo as 'config'")
        error.input_name = "config"  # the input a node UI points at
        return error

    @classmethod
    def not_clip_vision(cls, path: str, why: str) -> "ConfigError":
        """A file given as a CLIP vision encoder that none of the shipped configs describe (``why``)."""
        error = cls(f"cannot read {path} as a CLIP vision encoder (transformers' CLIPVisionModelWithProjection, as "
                    f"ComfyUI's clip_vision folder keeps them): {why}")
        error.input_name = "image_encoder"  # the input a node UI points at
        return error

    @classmethod
    def unreadable(cls, path: str, cause: BaseException) -> "ConfigError":
        return cls(f"cannot read config {path}: {type(cause).__name__}: {cause}")

    @classmethod
    def unsaveable_blocks(cls, classes: Sequence[str], reason: str) -> "ConfigError":
        return cls(
            f"cannot save the custom blocks {', '.join(classes)}: {reason}. Custom block classes are saved from "
            f"their source, so they must be defined at the top level of a .py file (import them from it)"
        )

    @classmethod
    def custom_schedule(cls, scheduler: str, timesteps: bool, sigmas: bool) -> "ConfigError":
        """Custom ``timesteps`` and ``sigmas`` both given, or one the scheduler's ``set_timesteps`` does not take."""
        if timesteps and sigmas:
            return cls("give either custom timesteps or custom sigmas, not both")
        return cls(f"{scheduler} does not take custom {'timesteps' if timesteps else 'sigmas'}")

    @classmethod
    def batch_repeat(cls, rows: int, batch: int) -> "ConfigError":
        return cls(f"cannot repeat a batch of {rows} to {batch}: give 1 row or a number of rows that divides {batch}")

    @classmethod
    def embedding_width(cls, expected: int, num_ids: int, pooled_dim: int, given: int) -> "ConfigError":
        """SDXL's UNet added embedding does not fit its time ids and pooled text embeddings."""
        return cls(
            f"the UNet's added embedding takes {expected} features but {num_ids} time ids and pooled embeddings of "
            f"width {pooled_dim} give {given}; check requires_aesthetics_score and text_encoder_2"
        )

    @classmethod
    def unsaveable_component(cls, name: str, type_name: str, reason: str) -> "ConfigError":
        return cls(
            f"cannot save component '{name}' ({type_name}): {reason}; give it as a ComponentSpec with a repo "
            f"(pipe.update_components({name}=ComponentSpec('{name}', ..., repo=...)))"
        )


class ReadOnlyConfigError(DiffblocksError, TypeError):
    """A component's config was written to; configs are frozen."""

    @classmethod
    def frozen(cls) -> "ReadOnlyConfigError":
        return cls("a config is read-only; build a new object with from_config(config, key=value)")


class RemoteCodeError(DiffblocksError, PermissionError):
    @classmethod
    def not_trusted(cls, repo: str, filename: str) -> "RemoteCodeError":
        return cls(
            f"{repo} defines its blocks in custom code ({filename}); read it, then load with "
            f"trust_remote_code=True to run it"
        )

    @classmethod
    def untrusted_refs(cls, config_file: str, refs: Sequence[str]) -> "RemoteCodeError":
        return cls(
            f"{config_file} names block classes that are not diffblocks' own: {', '.join(refs)}. Code from a repo "
            f"(its block.py, or any module named there) runs only with trust_remote_code=True: read it, then load "
            f"with trust_remote_code=True to run it"
        )

    @classmethod
    def not_a_block(cls, config_file: str, ref: str) -> "RemoteCodeError":
        return cls(
            f"{config_file}: '{ref}' does not name a ModularPipelineBlocks subclass; a block tree names only block "
            f"classes (diffblocks' own as 'module:Class', the repo's block.py classes as 'block:Class')"
        )


class HubUnreachableError(MissingFileError):
    """A Hub repo is needed, the Hub cannot be reached (or HF_HUB_OFFLINE is set) and the repo is not cached."""

    @classmethod
    def not_cached(cls, repo: str, looked_for: str, endpoint: str, cache_dir: str, offline: bool,
                   cause: BaseException | None = None) -> "HubUnreachableError":
        if offline:
            why = "HF_HUB_OFFLINE is set"
            fix = "unset HF_HUB_OFFLINE to download it"
        else:
            detail = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            why = f"the Hub ({endpoint}) cannot be reached{detail}"
            fix = ("connect to the network, or download it once while online and then set HF_HUB_OFFLINE=1 to use "
                   "the cached copy")
        return cls(
            f"{why} and the repo '{repo}' is not in the local cache ({cache_dir}; looked for {looked_for}); {fix}, "
            "or pass the path of a local folder instead of a Hub id"
        )
