"""Find a component's files in a local folder or a Hub repo (through huggingface_hub's cache).

Hub access honours ``HF_HUB_OFFLINE`` because it goes through ``hf_hub_download``; a missing file is a
:class:`MissingFileError` that names every place looked in.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..modular_pipelines.errors import MissingFileError


def is_local(path_or_repo: str | os.PathLike) -> bool:
    """A folder on disk, or something that can only be a path (absolute, ./, ~, or deeper than org/name)."""
    if isinstance(path_or_repo, os.PathLike) or Path(str(path_or_repo)).expanduser().is_dir():
        return True
    text = str(path_or_repo)
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def _describe(path_or_repo, subfolder: str | None, filename: str) -> str:
    parts = [str(path_or_repo)] + ([subfolder] if subfolder else []) + [filename]
    return "/".join(parts)


def try_resolve_file(
    path_or_repo: str | os.PathLike,
    filename: str,
    subfolder: str | None = None,
    revision: str | None = None,
) -> Path | None:
    """The local path of ``filename`` in a folder or Hub repo, or None when it is not there."""
    if is_local(path_or_repo):
        path = Path(path_or_repo).expanduser() / (subfolder or "") / filename
        return path if path.is_file() else None
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        return Path(
            hf_hub_download(
                str(path_or_repo), filename, subfolder=subfolder or None, revision=revision
            )
        )
    except (EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError):
        return None


def resolve_file(
    path_or_repo: str | os.PathLike,
    filenames: str | list[str],
    subfolder: str | None = None,
    revision: str | None = None,
    what: str = "file",
) -> Path:
    """The first of ``filenames`` found in the folder or repo; raises naming every path looked for."""
    candidates = [filenames] if isinstance(filenames, str) else list(filenames)
    for name in candidates:
        found = try_resolve_file(path_or_repo, name, subfolder=subfolder, revision=revision)
        if found is not None:
            return found
    raise MissingFileError.not_found([_describe(path_or_repo, subfolder, n) for n in candidates], what=what)
