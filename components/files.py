"""Find a component's files in a local folder or a Hub repo (through huggingface_hub's cache).

Hub access goes through ``hf_hub_download``, so ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_HOME`` work as
they do for huggingface_hub. A missing file is a :class:`MissingFileError` that names every place looked in;
a repo that is neither reachable nor cached is a :class:`HubUnreachableError`, said at once.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import HubUnreachableError, MissingFileError

# weight files by how they are read: safetensors (``.sft``: early FLUX.1 releases' name for it) memory-mapped, the
# rest with torch's weights-only unpickler (A1111's ``.ckpt``, ControlNet 1.1's ``.pth``, VAEs' ``.pt``, diffusers' ``.bin``)
SAFETENSORS_SUFFIXES = (".safetensors", ".sft")
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
WEIGHTS_SUFFIXES = SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES

# endpoints that answered in this process: their later look-ups skip the reachability check
_ANSWERED: set[str] = set()


def is_local(path_or_repo: str | os.PathLike) -> bool:
    """A folder on disk, or something that can only be a path (absolute, ./, ~, or deeper than org/name)."""
    if isinstance(path_or_repo, os.PathLike) or Path(str(path_or_repo)).expanduser().is_dir():
        return True
    text = str(path_or_repo)
    return text.startswith(("/", ".", "~")) or text.count("/") > 1 or "\\" in text


def is_weights_file(value: str | os.PathLike | None) -> bool:
    """Whether ``value`` names a local weights file (one of :data:`WEIGHTS_SUFFIXES`), not a folder or a Hub repo."""
    if value is None:
        return False
    path = Path(value).expanduser()
    return path.suffix.lower() in WEIGHTS_SUFFIXES and path.is_file()


def _describe(path_or_repo, subfolder: str | None, filename: str) -> str:
    parts = [str(path_or_repo)] + ([subfolder] if subfolder else []) + [filename]
    return "/".join(parts)


def _hub_answers(url: str) -> BaseException | None:
    """None when the Hub answers a HEAD of ``url`` (any HTTP status), else the connection error.

    One try within ``HF_HUB_ETAG_TIMEOUT``: ``hf_hub_download`` itself retries a failed connection with
    backoff for about 25 s per file before it looks in the cache.
    """
    from huggingface_hub import constants, get_hf_file_metadata
    from huggingface_hub.errors import HfHubHTTPError

    try:
        get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except HfHubHTTPError:
        return None  # an answer (404, 401, ...): hf_hub_download reports it as usual
    except Exception as err:  # the HTTP client's connection and timeout errors (its classes vary by version)
        return err
    return None


def _in_cache(repo: str, revision: str | None) -> bool:
    """Whether huggingface_hub's cache holds a snapshot of ``repo`` at ``revision`` (a branch, tag or commit)."""
    from huggingface_hub import constants
    from huggingface_hub.file_download import repo_folder_name

    folder = Path(constants.HF_HUB_CACHE) / repo_folder_name(repo_id=repo, repo_type="model")
    revision = revision or constants.DEFAULT_REVISION
    return (folder / "refs" / revision).is_file() or (folder / "snapshots" / revision).is_dir()


def _try_hub_file(repo: str, filename: str, subfolder: str | None, revision: str | None) -> Path | None:
    from huggingface_hub import constants, hf_hub_download, hf_hub_url
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError, RepositoryNotFoundError

    offline = constants.HF_HUB_OFFLINE
    unreachable = None
    if not offline and constants.ENDPOINT not in _ANSWERED:
        unreachable = _hub_answers(hf_hub_url(repo, filename, subfolder=subfolder or None, revision=revision))
        if unreachable is None:
            _ANSWERED.add(constants.ENDPOINT)
    try:
        # without the Hub, the cache is all there is (as with HF_HUB_OFFLINE)
        found = hf_hub_download(repo, filename, subfolder=subfolder or None, revision=revision,
                                local_files_only=offline or unreachable is not None)
        return Path(found)
    except LocalEntryNotFoundError as err:
        if _in_cache(repo, revision):
            return None  # the cached copy has no such file
        cause = unreachable or err.__cause__
        raise HubUnreachableError.not_cached(repo, _describe(repo, subfolder, filename), constants.ENDPOINT,
                                             constants.HF_HUB_CACHE, offline, cause) from (cause or err)
    except (EntryNotFoundError, RepositoryNotFoundError):
        return None


def try_resolve_file(
    path_or_repo: str | os.PathLike,
    filename: str,
    subfolder: str | None = None,
    revision: str | None = None,
) -> Path | None:
    """The local path of ``filename`` in a folder or Hub repo, or None when it is not there.

    Raises:
        HubUnreachableError: a Hub repo while the Hub cannot be reached (or ``HF_HUB_OFFLINE`` is set) that
            is not in huggingface_hub's cache.
    """
    if is_local(path_or_repo):
        path = Path(path_or_repo).expanduser() / (subfolder or "") / filename
        return path if path.is_file() else None
    return _try_hub_file(str(path_or_repo), filename, subfolder, revision)


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
