"""ArtifactStore: content addressing, validated ids (no traversal), bounded and checked image decoding."""

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
from PIL import Image

from diffblocks.components.errors import ArtifactError
from diffblocks.nodes.artifacts import ArtifactStore, encode_png


def png_bytes(size=(8, 6), color=(10, 200, 30), fmt="PNG"):
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path):
    return ArtifactStore(tmp_path / "artifacts", max_pixels=64 * 64)


def test_put_bytes_is_content_addressed(store):
    data = png_bytes()
    sha = store.put_bytes(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.put_bytes(data) == sha  # stored once
    assert store.has(sha) and store.path(sha).read_bytes() == data
    assert store.media_type(sha) == "image/png"


def test_puts_from_threads_store_each_image_once_and_leave_no_temporary_file(store):
    images = [png_bytes(color=(i, 0, 0)) for i in range(12)]
    with ThreadPoolExecutor(6) as pool:  # each image put by two threads at once, into folders not made yet
        shas = list(pool.map(store.put_bytes, images + images))
    assert shas == [hashlib.sha256(data).hexdigest() for data in images + images]
    assert all(store.read_bytes(sha) == data for sha, data in zip(shas, images))
    files = [path for path in store.root.rglob("*") if path.is_file()]
    assert sorted(path.name for path in files) == sorted(set(shas))  # no ".incoming-" file left


def test_a_failed_write_leaves_nothing_behind(store, monkeypatch):
    def full_disk(fd, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        store.put_bytes(png_bytes())
    monkeypatch.undo()
    assert [path for path in store.root.rglob("*") if path.is_file()] == []
    sha = store.put_bytes(png_bytes())  # and the next put works
    assert store.read_bytes(sha) == png_bytes()


def test_put_image_is_deterministic_and_roundtrips_pixels(store):
    image = Image.new("RGB", (5, 7), (1, 2, 3))
    image.putpixel((2, 3), (250, 0, 9))
    sha = store.put_image(image)
    assert store.put_image(image.copy()) == sha
    assert hashlib.sha256(encode_png(image)).hexdigest() == sha
    opened = store.open_image(sha)
    assert opened.size == (5, 7) and list(opened.getdata()) == list(image.getdata())


def test_other_media_type_is_remembered(store):
    sha = store.put_bytes(b'{"a": 1}', media_type="application/json")
    assert store.media_type(sha) == "application/json"


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "a" * 63, "a" * 65, "g" * 64, "", "..", "a" * 62 + "/x", None, 12])
def test_malformed_ids_never_build_a_path(store, bad):
    with pytest.raises(ArtifactError, match="must be 64 lowercase hex characters") as info:
        store.path(bad)
    assert info.value.kind == "malformed"
    assert not store.has(bad)


def test_missing_artifact_is_named(store):
    with pytest.raises(ArtifactError, match="no artifact " + "ab" * 32 + "; upload it first") as info:
        store.open_image("ab" * 32)
    assert info.value.kind == "missing"


def test_check_image_bytes_accepts_common_formats(store):
    for fmt in ("PNG", "JPEG", "BMP", "GIF", "WEBP"):
        assert store.check_image_bytes(png_bytes(fmt=fmt)).size == (8, 6)


def test_shell_script_named_png_is_not_an_image(store):
    with pytest.raises(ArtifactError, match="not an image this server accepts: the upload is not a PNG, JPEG") as info:
        store.check_image_bytes(b"#!/bin/sh\nrm -rf /\n")
    assert info.value.kind == "not_image"


def test_truncated_png_is_rejected(store):
    data = png_bytes(size=(32, 32))
    with pytest.raises(ArtifactError, match="the upload is corrupt") as info:
        store.check_image_bytes(data[: len(data) // 2])
    assert info.value.kind == "not_image"


def test_pixel_limit_is_checked_before_decoding(store):
    with pytest.raises(ArtifactError, match="65x64 pixels is over the limit of 4096 pixels") as info:
        store.check_image_bytes(png_bytes(size=(65, 64)))
    assert info.value.kind == "too_large"
    assert store.check_image_bytes(png_bytes(size=(64, 64))).size == (64, 64)


def test_eps_is_refused_without_running_anything(store):
    with pytest.raises(ArtifactError, match="not an image"):
        store.check_image_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\n")


def test_temporary_root_is_removed_with_the_store():
    store = ArtifactStore()
    root = store.root
    store.put_bytes(b"x")
    assert root.is_dir()
    del store
    import gc

    gc.collect()
    assert not root.exists()


def test_an_image_opened_from_an_artifact_is_known_as_that_artifact_by_identity_only(tmp_path):
    """An output that is an input unchanged (LoadImage's) is that artifact; a copy or anything made from it is not,
    though PIL copies its info along."""
    store = ArtifactStore(tmp_path)
    sha = store.put_image(Image.new("RGB", (16, 16), (10, 20, 30)))
    image = store.open_image(sha)
    assert store.source_of(image) == sha
    assert store.source_of(image.copy()) is None and store.source_of(image.resize((8, 8))) is None
    assert store.source_of(store.open_image(sha)) == sha
