"""The sha256 of model files, as A1111 writes them into images (``Model hash``, ``VAE hash``, ``Lora hashes``: what
Civitai links the files by), remembered across runs in ``hashes.json`` of diffblocks' cache folder by path, size and
modification time, as A1111 keeps them in its ``cache.json``: a 7 GB checkpoint takes seconds to hash once, and no
time after. Safe under threads; processes that write the file together each write it whole (the last one's
entries win, and a hash left out is computed again)."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path

from ..components.files import SAFETENSORS_SUFFIXES

_LOCK = threading.Lock()


def cache_file() -> Path:
    """``$DIFFBLOCKS_HASHES`` when set, else ``$XDG_CACHE_HOME/diffblocks/hashes.json`` (``~/.cache`` without it),
    beside ``serve``'s data folder."""
    if os.environ.get("DIFFBLOCKS_HASHES"):
        return Path(os.environ["DIFFBLOCKS_HASHES"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "diffblocks" / "hashes.json"


def file_sha256(path: Path, addnet: bool = False) -> str:
    """The sha256 (hex) of the file at ``path``; ``addnet``: of a safetensors file without its header (kohya's
    "addnet" hash of a LoRA, so that editing its metadata keeps it). Read from the cache when the file's size and
    modification time are those it was hashed at."""
    stat = path.stat()
    key = f"{'addnet:' if addnet else ''}{path.resolve()}"
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    with _LOCK:
        known = _entries().get(key)
    if isinstance(known, dict) and {k: known.get(k) for k in stamp} == stamp and isinstance(known.get("sha256"), str):
        return known["sha256"]
    digest = _hash(path, addnet)
    with _LOCK:
        entries = _entries()
        entries[key] = {**stamp, "sha256": digest}
        _write(entries)
    return digest


def _hash(path: Path, addnet: bool) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        if addnet and path.suffix.lower() in SAFETENSORS_SUFFIXES:
            header = int.from_bytes(file.read(8), "little")
            file.seek(8 + header, os.SEEK_SET)
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _entries() -> dict:
    """The cache's entries; none when it is missing or unreadable (it is only a cache)."""
    try:
        entries = json.loads(cache_file().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _write(entries: dict) -> None:
    """Replace the cache file whole (a reader never sees half of it); a folder that cannot be written is left."""
    target = cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=target.parent, suffix=".tmp", delete=False) as file:
            json.dump(entries, file)
    except OSError:
        return
    try:
        os.replace(file.name, target)
    except OSError:
        Path(file.name).unlink(missing_ok=True)
