"""The LoRAs of a run as A1111 writes them into an image: a ``<lora:NAME:WEIGHT>`` tag each after the prompt (what
it takes out of the prompt again, and what the node editor's import and ``--from-image`` name), and their hashes
(``Lora hashes``, as Civitai reads them to link the files)."""

from __future__ import annotations

from pathlib import Path

from .hashes import file_sha256


def lora_names(sources: list[tuple[str, str | None, float]]) -> list[tuple[str, float, Path | None]]:
    """``(name, weight, local file or None)`` of each ``--lora`` (``files.lora_sources``): the name is the file's
    stem, as A1111 names a LoRA by its file (a Hub repo's last part when no file is named)."""
    named = []
    for source, weight_name, weight in sources:
        path = Path(source)
        if weight_name is None and path.is_dir():
            files = sorted(path.glob("*.safetensors")) or sorted(path.glob("*.bin"))
            path = files[0] if len(files) == 1 else path
        local = path if path.is_file() else None
        name = Path(weight_name).stem if weight_name else (path.stem if local else path.name)
        named.append((name, weight, local))
    return named


def lora_tags(sources) -> str:
    """The tags A1111's prompts hold for ``sources``: ``<lora:ink:0.8> <lora:chalk:1>``."""
    return " ".join(f"<lora:{name}:{format(weight, 'g')}>" for name, weight, _ in lora_names(sources))


def lora_hashes(sources) -> str | None:
    """A1111's ``Lora hashes`` value for the local files among ``sources`` (``"ink: 1a2b3c4d5e6f, ..."``), or
    None when there is none."""
    hashes = [f"{name}: {short_hash(path)}" for name, _, path in lora_names(sources) if path is not None]
    return ", ".join(hashes) or None


def short_hash(path: Path) -> str:
    """A1111's short hash of a LoRA file: the first 12 hex digits of its sha256, a safetensors file's without its
    header (kohya's "addnet" hash, so that editing the metadata keeps it)."""
    return file_sha256(path, addnet=True)[:12]
