"""Model files' hashes as A1111 writes them (``Model hash``, ``VAE hash``: the first 10 hex digits of the file's
sha256), remembered across runs by path, size and modification time, and safe when threads hash together."""

import hashlib
import json
import os
import threading

import pytest
from PIL import Image
from test_cli import read_infotext, run_cli

from diffblocks.cli import hashes


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFBLOCKS_HASHES", str(tmp_path / "cache" / "hashes.json"))
    return tmp_path / "cache" / "hashes.json"


def test_a_files_hash_is_computed_once_and_again_when_the_file_changes(tmp_path, cache, monkeypatch):
    file = tmp_path / "model.safetensors"
    file.write_bytes(b"weights" * 1000)
    assert hashes.file_sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest()
    assert json.loads(cache.read_text())[str(file.resolve())]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()

    def unread(*_):
        raise AssertionError("hashed again")

    monkeypatch.setattr(hashes, "_hash", unread)
    assert hashes.file_sha256(file) == hashlib.sha256(file.read_bytes()).hexdigest()  # from the cache
    monkeypatch.undo()
    monkeypatch.setenv("DIFFBLOCKS_HASHES", str(cache))
    file.write_bytes(b"other weights")  # a new size (and time): hashed again
    assert hashes.file_sha256(file) == hashlib.sha256(b"other weights").hexdigest()


def test_a_broken_or_unwritable_cache_only_costs_the_time(tmp_path, monkeypatch):
    file = tmp_path / "model.ckpt"
    file.write_bytes(b"pickle")
    broken = tmp_path / "hashes.json"
    broken.write_text("{not json")
    monkeypatch.setenv("DIFFBLOCKS_HASHES", str(broken))
    assert hashes.file_sha256(file) == hashlib.sha256(b"pickle").hexdigest()
    assert str(file.resolve()) in json.loads(broken.read_text())  # replaced whole
    (tmp_path / "blocked").write_text("a file where the folder would be")
    monkeypatch.setenv("DIFFBLOCKS_HASHES", str(tmp_path / "blocked" / "hashes.json"))
    assert hashes.file_sha256(file) == hashlib.sha256(b"pickle").hexdigest()
    assert [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"] == []


def test_threads_hashing_together_get_what_one_thread_gets_and_lose_no_entry(tmp_path, cache):
    files = []
    for index in range(8):
        files.append(tmp_path / f"m{index}.safetensors")
        files[-1].write_bytes(os.urandom(200_000 + index))
    expected = {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files}
    got, barrier = {}, threading.Barrier(len(files))

    def work(file):
        barrier.wait()
        got[file] = hashes.file_sha256(file)

    threads = [threading.Thread(target=work, args=(f,)) for f in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert got == expected
    assert {k: v["sha256"] for k, v in json.loads(cache.read_text()).items()} == {
        str(f.resolve()): h for f, h in expected.items()}


def test_run_writes_the_hashes_of_its_model_and_vae_files_as_a1111(sd_repo, sd_file, tmp_path, capsys, cache):
    from tiny_checkpoints import to_original, write_vae

    from diffblocks.components.checkpoint_names import vae_table

    tuned, checkpoint = sd_file
    vae = write_vae(tmp_path / "vae-ft-mse.safetensors",
                    to_original(tuned.vae.state_dict(), vae_table(tuned.vae.config)))
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(checkpoint), "--config", str(sd_repo),
                           "--vae", str(vae), "--steps", "2", "--device", "cpu", "--no-progress",
                           "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    text = Image.open(tmp_path / "a.png").text["parameters"]
    short = {path: hashlib.sha256(path.read_bytes()).hexdigest()[:10] for path in (checkpoint, vae)}
    assert (f"Model hash: {short[checkpoint]}, Model: tiny-sd15, VAE hash: {short[vae]}, "
            "VAE: vae-ft-mse.safetensors") in text
    fields = read_infotext(tmp_path / "a.png")[2]
    assert fields["Model hash"] == short[checkpoint]
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(sd_repo), "--steps", "2", "--device",
                           "cpu", "--no-progress", "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    assert "hash" not in Image.open(tmp_path / "b.png").text["parameters"]  # a folder has no file to hash
