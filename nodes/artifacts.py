"""Content-addressed artifact files: images the node engine reads (``LoadImage``) and the server serves.

An artifact is a file named by the sha256 hex digest of its bytes, so the same image stored twice is one file
and an id says nothing but which bytes it names. Ids are checked to be exactly 64 lowercase hex characters
before any path is built from them, so no id can reach outside the store's folder. Images are decoded with a
pixel limit that is checked on the header, before any pixel is decompressed.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import tempfile
import threading
import uuid
import weakref
from pathlib import Path
from typing import Mapping

from PIL import Image, UnidentifiedImageError

from ..components.errors.nodes import ArtifactError

_SHA = re.compile(r"[0-9a-f]{64}")
# formats whose decoders are plain pixel codecs; EPS and friends can call out to other programs
READABLE_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF")
_FORMATS_TEXT = "PNG, JPEG, WebP, BMP or GIF"
_PNG_MODES = {"1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"}


def _kind(error: ArtifactError, kind: str) -> ArtifactError:
    """Tag ``error`` with what went wrong (``malformed``, ``missing``, ``not_image``, ``too_large``), which the
    server turns into a status code."""
    error.kind = kind
    return error


PNG_LEVEL = 1  # zlib's fastest: see encode_png


def encode_png(image: Image.Image, text: Mapping[str, str] | None = None) -> bytes:
    """``image`` as PNG bytes, with ``text`` as tEXt chunks (a server's outputs carry their workflow, as ComfyUI's
    do); the same pixels and text always give the same bytes (no timestamps).

    At zlib level 1: a server stores every output image between the engine's end and the job's last event, so the
    time spent here is time a client waits. On generated-looking 512 px images (2 cores) level 1 took 21-23 ms,
    ComfyUI's level 4 38-46 ms and PIL's default 6 59-121 ms; level 1 files were 15-20 % larger than level 4's,
    and level 6's no smaller than 4's (``benchmarks/bench_server.py`` prints this for the machine it runs on)."""
    if image.mode not in _PNG_MODES:
        image = image.convert("RGBA" if "A" in image.mode else "RGB")
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_LEVEL, pnginfo=info)
    return buffer.getvalue()


class ByIdentity:
    """A value per live object, by identity (not equality, not a copy), forgotten when the object goes; thread-safe."""

    def __init__(self):
        self._items: dict[int, tuple[weakref.ref, object]] = {}
        self._lock = threading.Lock()

    def get(self, obj) -> object | None:
        with self._lock:
            known = self._items.get(id(obj))
        return known[1] if known is not None and known[0]() is obj else None

    def put(self, obj, value) -> None:
        key = id(obj)
        with self._lock:
            self._items[key] = (weakref.ref(obj, lambda _, key=key: self._forget(key)), value)

    def _forget(self, key: int) -> None:
        with self._lock:
            known = self._items.get(key)
            if known is not None and known[0]() is None:
                del self._items[key]


class ArtifactStore:
    """Files addressed by the sha256 of their bytes, under one folder.

    Args:
        root: the folder; ``None`` makes a temporary one that the store deletes when it is garbage collected.
        max_pixels: the largest image (width x height) ``check_image_bytes`` and ``open_image`` decode.
    """

    def __init__(self, root: str | Path | None = None, max_pixels: int = 4096 * 4096):
        if root is None:
            root = tempfile.mkdtemp(prefix="diffblocks-artifacts-")
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, True)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_pixels = int(max_pixels)
        self._opened = ByIdentity()  # image object -> the artifact it was opened from

    def __repr__(self) -> str:
        return f"ArtifactStore(root='{self.root}', max_pixels={self.max_pixels})"

    def path(self, sha: str) -> Path:
        """The file of artifact ``sha``; raises ``ArtifactError`` unless ``sha`` is 64 lowercase hex characters."""
        if not isinstance(sha, str) or not _SHA.fullmatch(sha):
            raise _kind(ArtifactError.bad_id(sha), "malformed")
        return self.root / sha[:2] / sha

    def has(self, sha: str) -> bool:
        """Whether artifact ``sha`` is stored (False for a malformed id)."""
        try:
            return self.path(sha).is_file()
        except ArtifactError:
            return False

    def media_type(self, sha: str) -> str:
        """The media type the artifact was stored with (``image/png`` unless told otherwise)."""
        side = self.path(sha).with_suffix(".type")
        return side.read_text().strip() if side.is_file() else "image/png"

    def put_bytes(self, data: bytes, media_type: str = "image/png") -> str:
        """Store ``data`` (once: the same bytes give the same id) and return its sha256 hex id."""
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        if target.is_file():
            return sha
        if media_type != "image/png":
            target.parent.mkdir(parents=True, exist_ok=True)
            target.with_suffix(".type").write_text(media_type)
        write_new(target, data)
        return sha

    def share(self, shas) -> None:
        """Make artifacts ``shas`` readable by every process that runs jobs: nothing to do when they all read this
        folder (``RedisArtifactStore`` puts them back in Redis)."""

    def put_image(self, image: Image.Image, text: Mapping[str, str] | None = None) -> str:
        """Store ``image`` as PNG (deterministically encoded, with ``text`` chunks) and return its id."""
        return self.put_bytes(encode_png(image, text), "image/png")

    def check_image_bytes(self, data: bytes, what: str = "the upload") -> Image.Image:
        """Decode ``data`` as an image, within the pixel limit.

        Raises:
            ArtifactError: the bytes are not a PNG, JPEG, WebP, BMP or GIF image, are corrupt, or the image has
                more than ``max_pixels`` pixels (checked before decoding the pixels).
        """
        try:
            image = Image.open(io.BytesIO(data), formats=READABLE_FORMATS)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
            raise _kind(ArtifactError.not_an_image(f"{what} is not a {_FORMATS_TEXT} file"), "not_image") from err
        if image.width * image.height > self.max_pixels:
            raise _kind(ArtifactError.too_many_pixels(image.width, image.height, self.max_pixels), "too_large")
        try:
            image.load()
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            raise _kind(ArtifactError.not_an_image(f"{what} is corrupt ({err})"), "not_image") from err
        return image

    def open_image(self, sha: str) -> Image.Image:
        """The image stored as artifact ``sha``; raises ``ArtifactError`` if the id is malformed or unknown."""
        path = self.path(sha)
        if not path.is_file():
            raise _kind(ArtifactError.missing(sha), "missing")
        image = self.check_image_bytes(path.read_bytes(), what=f"artifact {sha}")
        self._opened.put(image, sha)
        return image

    def source_of(self, image) -> str | None:
        """The artifact ``image`` (this object, not a copy or a derived image) was opened from, or None: an
        output that is an input unchanged is that artifact, not a new one."""
        return self._opened.get(image)

    def read_bytes(self, sha: str) -> bytes:
        """The stored bytes of artifact ``sha``; raises ``ArtifactError`` if the id is malformed or unknown."""
        path = self.path(sha)
        if not path.is_file():
            raise _kind(ArtifactError.missing(sha), "missing")
        return path.read_bytes()


def write_new(target: Path, data: bytes) -> None:
    """Write ``data`` to ``target``, making its folder if needed: written then renamed, so a reader never sees half
    a file under a valid id, and in as few system calls as can be (a server stores a job's images between the
    engine's end and the job's last event). A failed write (a full disk) leaves nothing behind."""
    tmp = target.parent / f".incoming-{uuid.uuid4().hex}"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileNotFoundError:  # the first file in its folder
        target.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
