"""Flags that name files: the output image, input images, and model folders or Hub repos."""

from __future__ import annotations

import os
import re
import math
from pathlib import Path

from ..components.errors import FlagError
from ..components.files import WEIGHTS_SUFFIXES, is_weights_file

REPO_ID = re.compile(r"^[\w][\w.-]*/[\w.-]+$")
WEIGHTS = (".bin", ".safetensors")


def output_path(out: str) -> Path:
    """``--out`` as a path whose folder exists: a missing folder is refused rather than created, so that a
    typo in it is caught before rendering, as ``cp`` or ``convert`` would."""
    from PIL import Image

    path = Path(out).expanduser()
    if path.is_dir():
        raise FlagError.unusable("--out", out, f"names a folder; give a file name, e.g. {path / 'out.png'}")
    extensions = Image.registered_extensions()
    if extensions.get(path.suffix.lower()) not in Image.SAVE:
        raise FlagError.unusable("--out", out, "cannot tell the image format; end it with .png, .jpg or .webp")
    folder = path.parent
    if not folder.is_dir():
        raise FlagError.unusable("--out", out, f"the folder {folder} does not exist; create it first")
    if not os.access(folder, os.W_OK):
        raise FlagError.unusable("--out", out, f"cannot write in the folder {folder}")
    return path


def open_image(flag: str, path: str | None):
    """The image ``flag`` names, as RGB, or None when the flag is not given."""
    if path is None:
        return None
    from PIL import Image

    if not Path(path).is_file():
        raise FlagError.unusable(flag, path, "is a folder, not an image" if Path(path).is_dir() else "file not found")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise FlagError.unusable(flag, path, f"cannot read the image: {err}") from err


def local_or_repo(flag: str, value: str, what: str) -> str:
    """A local folder holding ``config.json`` (or ``model_index.json``), else a Hub repo id."""
    path = Path(value).expanduser()
    if path.is_file():
        raise FlagError.unusable(flag, value, f"is a file; give the {what}'s folder")
    if path.is_dir():
        if not any((path / name).is_file() for name in ("config.json", "model_index.json")):
            raise FlagError.unusable(flag, value, f"has no config.json or model_index.json; give the {what}'s folder")
        return str(path)
    if REPO_ID.match(value) and not value.startswith("."):
        return value
    raise FlagError.unusable(flag, value, "no such folder (nor a Hub repo id like owner/name)")


def image_encoder_arg(value: str) -> str:
    """``--ip-adapter-encoder``: a CLIP vision file as ComfyUI's clip_vision folder keeps them (checked here: a shipped
    config has its size), else a folder or Hub repo (:func:`local_or_repo`)."""
    path = Path(value).expanduser()
    if not path.is_file():
        return local_or_repo("--ip-adapter-encoder", value, "image encoder")
    from ..components.clip_vision_files import clip_vision_config
    from ..components.errors import DiffblocksError

    try:
        clip_vision_config(path)
    except (DiffblocksError, OSError) as err:
        raise FlagError.failed("--ip-adapter-encoder", value, err) from err
    return str(path)


def checkpoint_arg(args) -> tuple[str | None, str | None]:
    """``(file, family)`` when ``--model`` is an original Stable Diffusion checkpoint file (``.safetensors`` or
    ``.ckpt``, as A1111 and ComfyUI keep them), else ``(None, None)``; ``--config`` only goes with one."""
    from ..components.checkpoints import file_family
    from ..components.errors import ConfigError, UnsafeFileError

    config = getattr(args, "config", None)
    if not is_weights_file(args.model):
        if config is not None:
            raise FlagError.needs("--config", "--model FILE.safetensors (an original Stable Diffusion checkpoint)")
        return None, None
    path = str(Path(args.model).expanduser())
    try:
        return path, file_family(path)
    except (ConfigError, UnsafeFileError) as err:
        raise FlagError.unusable("--model", args.model, str(err)) from err
    except Exception as err:  # not a weights file at all
        raise FlagError.unusable("--model", args.model, f"cannot read it as a weights file: {err}") from err


def start_model(model: str | None, dirs: list[Path] = ()) -> str | None:
    """``serve`` / ``worker --model``: ``embedded``, a folder or Hub repo, a checkpoint file (``.safetensors``,
    ``.ckpt``), or the name of a checkpoint or diffusers folder in ``dirs`` (``--models-dir``)."""
    if model is None or model == "embedded":
        return model
    if dirs:
        from ..nodes.model_files import ModelFolders

        folders = ModelFolders(dirs)
        found = folders.resolve("checkpoints", model) or folders.resolve("diffusers", model)
        if found is not None:
            return str(found)  # as a job naming it finds it: the components it loads are shared
    if is_weights_file(model):
        return str(Path(model).expanduser().resolve())
    return local_or_repo("--model", model, "model")


def model_dirs(values: list[str] | None) -> list[Path]:
    """``--models-dir``, as often as given: folders laid out as ComfyUI's ``models/`` (``checkpoints/``, ``loras/``,
    ``vae/``, ...)."""
    from ..nodes.model_files import KINDS

    subfolders = [sub for kind in KINDS.values() for sub in kind.folders]
    dirs = []
    for value in values or []:
        path = Path(value).expanduser().resolve()
        if not path.is_dir():
            raise FlagError.unusable("--models-dir", value, "is not a folder" if path.exists() else "does not exist")
        if not any((path / sub).is_dir() for sub in subfolders) and (path / "models").is_dir():
            raise FlagError.unusable("--models-dir", value, f"has no {', '.join(sub + '/' for sub in subfolders[:3])} "
                                     f"...; give the folder that holds them: {path / 'models'}")
        dirs.append(path)
    return dirs


def controlnet_source(value: str) -> str:
    """``--controlnet``: a folder or Hub repo (diffusers' layout), or one file (``.safetensors``, or ControlNet 1.1's
    ``.pth``: the original layout, as A1111 and ComfyUI keep them, or diffusers')."""
    if is_weights_file(value):
        return str(Path(value).expanduser())
    return local_or_repo("--controlnet", value, "ControlNet")


def resolve_model(model: str | None, preset: str) -> str:
    """The model folder or Hub repo: the embedded model by default (SD 1.5 presets only)."""
    if model is None:
        if not preset.startswith("sd15-"):
            raise FlagError.needs(f"preset '{preset}'", "--model", "the embedded model is a Stable Diffusion 1.5 model")
        from ..presets import embedded_model_path

        return str(embedded_model_path())
    return local_or_repo("--model", model, "model")


def ip_adapter_source(value: str | None, encoder_given: bool = False) -> tuple[str, str, str] | None:
    """``(folder or repo, subfolder, weights file)`` of ``--ip-adapter``: a local weights file with
    ``image_encoder/`` beside it (or ``--ip-adapter-encoder``: ``encoder_given``), a local folder holding one weights
    file, or ``REPO/SUBFOLDER/FILE`` on the Hub (as in ``h94/IP-Adapter/models/ip-adapter_sd15.bin``, whose image
    encoder is ``models/image_encoder``)."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_dir():
        files = sorted(p.name for p in path.iterdir() if p.suffix in WEIGHTS)
        if len(files) != 1:
            raise FlagError.unusable("--ip-adapter", value, f"holds {len(files)} weights files "
                                     f"({', '.join(files) or 'no .bin or .safetensors'}); name one")
        path = path / files[0]
    if path.is_file():
        if not encoder_given and not (path.parent / "image_encoder" / "config.json").is_file():
            raise FlagError.unusable("--ip-adapter", value, f"no image encoder beside it (looked for "
                                     f"{path.parent / 'image_encoder' / 'config.json'}); or give "
                                     "--ip-adapter-encoder")
        return str(path.parent), "", path.name
    parts = value.split("/")
    if len(parts) >= 3 and REPO_ID.match("/".join(parts[:2])) and value.endswith(WEIGHTS) and value[0] not in "./~":
        return "/".join(parts[:2]), "/".join(parts[2:-1]), parts[-1]
    raise FlagError.unusable("--ip-adapter", value, "not found; give a weights file (.bin or .safetensors), a folder "
                             "holding one, or REPO/SUBFOLDER/FILE on the Hub")


def weights_file(flag: str, value: str | None) -> str | None:
    """``--transformer`` / ``--vae``: a local weights file (``.safetensors``, ``.ckpt``, ``.pt``), or ``owner/name/FILE``
    on the Hub."""
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.is_file():
        return str(path)
    parts = value.split("/")
    if len(parts) > 2 and REPO_ID.match("/".join(parts[:2])) and value[0] not in "./~" and value.endswith(WEIGHTS_SUFFIXES):
        return value
    raise FlagError.unusable(flag, value, "not found; give a weights file (.safetensors, .ckpt), or owner/name/FILE on "
                             "the Hub")


def embedding_sources(values: list[str] | None) -> list[tuple[str, str]]:
    """``(file, token)`` of each ``--embedding FILE[:TOKEN]``: an A1111 / diffusers textual-inversion file
    (``.pt``, ``.safetensors`` or ``.bin``); the token defaults to the file's name without its extension, the word
    A1111 prompts use."""
    sources = []
    for value in values or []:
        path, token = Path(value).expanduser(), None
        if not path.is_file():
            head, sep, tail = value.rpartition(":")
            if sep and head and Path(head).expanduser().is_file():
                path, token = Path(head).expanduser(), tail
        if not path.is_file() or path.suffix not in (".pt", ".safetensors", ".bin"):
            raise FlagError.unusable("--embedding", value, "not found; give an embedding file (.pt, .safetensors or "
                                     ".bin), optionally :TOKEN")
        if token is not None and not token.strip():
            raise FlagError.bad_value("--embedding", "FILE[:TOKEN] with a token that is not empty", value)
        sources.append((str(path), token or path.stem))
    return sources


def lora_sources(values: list[str] | None) -> list[tuple[str, str | None, float]]:
    """``(file, folder or repo; weights file in it or None; weight)`` of each ``--lora SOURCE[:WEIGHT]``: a local
    ``.safetensors`` / ``.bin`` file, a local folder holding one, or a Hub repo (``owner/name``, its
    ``pytorch_lora_weights.safetensors``, or ``owner/name/FILE``); WEIGHT defaults to 1."""
    sources = []
    for value in values or []:
        source, weight = value, 1.0
        head, sep, tail = value.rpartition(":")
        if sep and head:
            try:
                source, weight = head, float(tail)
            except ValueError:
                pass  # a colon in the path, no weight
        if not math.isfinite(weight):
            raise FlagError.bad_value("--lora", "SOURCE[:WEIGHT] with a finite weight", value)
        path = Path(source).expanduser()
        if path.is_file() or path.is_dir():
            sources.append((str(path), None, weight))
            continue
        parts = source.split("/")
        if REPO_ID.match("/".join(parts[:2])) and source[0] not in "./~" and (len(parts) == 2 or source.endswith(WEIGHTS)):
            sources.append(("/".join(parts[:2]), "/".join(parts[2:]) or None, weight))
            continue
        raise FlagError.unusable("--lora", value, "not found; give a LoRA file (.safetensors or .bin), a folder "
                                 "holding one, or a Hub repo (owner/name or owner/name/FILE)")
    return sources
