"""``diffblocks batch`` on the embedded model: 1 vs 2 processes (torchrun, gloo on CPU), batch sizes, a
killed run resumed, JSONL inputs.

Every process uses one torch thread: CPU kernels split their sums by thread, so the bytes of an image are
the same for any number of processes and any batch size, given the same thread count per process.
"""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from diffblocks.cli import main
from diffblocks.distributed.manifest import done_entries, read_items

STEPS = ["--steps", "2"]
PROMPTS = [f"a handwritten {word}" for word in ("zero", "one", "two", "three", "four", "five", "six", "seven")] * 3
ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def child_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def batch(*argv) -> int:
    return main(["batch", *map(str, argv), *STEPS, "--device", "cpu", "--no-progress"])


def images(out_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out_dir.glob("*.png"))}


def manifest(out_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (out_dir / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def prompts(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("prompts") / "prompts.txt"
    path.write_text("\n".join(PROMPTS[:12]) + "\n\n" + "\n".join(PROMPTS[12:]) + "\n")  # a blank line is skipped
    return path


@pytest.fixture(scope="module")
def reference(prompts, tmp_path_factory) -> Path:
    """One process, batch size 1."""
    out = tmp_path_factory.mktemp("reference")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert batch(prompts, "--out-dir", out, "--seed", 40) == 0
    finally:
        torch.set_num_threads(threads)
    return out


def test_one_process_writes_a_png_and_an_entry_per_item(reference, prompts):
    entries = manifest(reference)
    assert len(images(reference)) == len(PROMPTS) == len(entries)
    assert [(e["item"], e["prompt"], e["seed"], e["file"]) for e in entries] == \
        [(i, p, 40 + i, f"{i:06d}.png") for i, p in enumerate(PROMPTS)]
    for entry in entries:
        assert hashlib.sha256((reference / entry["file"]).read_bytes()).hexdigest() == entry["sha256"]
        assert entry["inputs"] == {"num_inference_steps": 2} and entry["rank"] == 0 and entry["seconds"] > 0
    assert not list(reference.glob("manifest.part-*"))


@pytest.mark.slow
def test_two_processes_give_the_same_bytes(reference, prompts, tmp_path):
    out = tmp_path / "out"
    run = subprocess.run([BIN / "torchrun", "--nproc_per_node", "2", "-m", "diffblocks.cli", "batch", prompts,
                          "--out-dir", out, "--seed", "40", "--batch-size", "3", *STEPS, "--device", "cpu"],
                         env=child_env(), capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stderr[-3000:]
    assert images(out) == images(reference)
    entries = manifest(out)
    assert [e["item"] for e in entries] == list(range(len(PROMPTS)))          # merged, in item order
    assert {e["rank"] for e in entries} == {0, 1}
    assert not list(out.glob("manifest.part-*"))
    assert f"{len(PROMPTS)}/{len(PROMPTS)}" in run.stderr                         # rank 0's one bar covers all
    assert run.stdout.count("wrote 24 images") == 1 and "2 process(es)" in run.stdout


def test_batch_size_does_not_change_the_bytes(reference, prompts, tmp_path, one_thread):
    assert batch(prompts, "--out-dir", tmp_path, "--seed", 40, "--batch-size", 5) == 0
    assert images(tmp_path) == images(reference)


def _wait_for_images(process, out: Path, count: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(list(out.glob("*.png"))) < count:
        assert process.poll() is None, "the run ended before it could be killed"
        assert time.monotonic() < deadline, "no images appeared"
        time.sleep(0.02)  # polling the folder, not waiting for the run


@pytest.mark.slow
def test_a_killed_run_resumes_without_redoing_what_was_done(reference, prompts, tmp_path, capsys, one_thread):
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "diffblocks.cli", "batch", prompts, "--out-dir", out,
                                "--seed", "40", *STEPS, "--device", "cpu", "--no-progress"],
                               env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_images(process, out, 2)
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    items = read_items(prompts, 40, {"num_inference_steps": 2})
    done = done_entries(items, out)
    assert 0 < len(done) < len(PROMPTS) and not (out / "manifest.jsonl").exists()
    before = {e["file"]: (out / e["file"]).stat().st_mtime_ns for e in done.values()}
    capsys.readouterr()
    assert batch(prompts, "--out-dir", out, "--seed", 40) == 0
    assert f"({len(PROMPTS) - len(done)} rendered, {len(done)} already done" in capsys.readouterr().out
    assert {name: (out / name).stat().st_mtime_ns for name in before} == before     # not written again
    assert images(out) == images(reference)
    assert [e["item"] for e in manifest(out)] == list(range(len(PROMPTS)))


def same_pixels(path: Path, image) -> bool:
    from PIL import Image

    with Image.open(path) as written:
        return written.size == image.size and written.convert("RGB").tobytes() == image.convert("RGB").tobytes()


def parameters(path: Path) -> tuple[str, str | None, dict[str, str]]:
    """A1111's reading of the image's ``parameters``: prompt, negative prompt, fields."""
    from PIL import Image

    from diffblocks.cli.infotext import parse

    with Image.open(path) as image:
        return parse(image.text["parameters"])


def test_jsonl_inputs_reach_the_pipeline(tmp_path, one_thread):
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.presets import embedded_model_path
    from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS

    lines = [{"prompt": "a seven", "num_inference_steps": 3, "guidance_scale": 2.0},
             {"prompt": "a one", "negative_prompt": "a seven", "height": 16, "width": 24}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert batch(path, "--out-dir", tmp_path / "out", "--seed", 5) == 0
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    for index, line in enumerate(lines):
        inputs = {"num_inference_steps": 2, **line}
        expected = pipe(generator=torch.Generator().manual_seed(5 + index), output="images", **inputs)[0]
        assert same_pixels(tmp_path / "out" / f"{index:06d}.png", expected)
    # each image says how it was made, its own line's inputs included
    first, second = (parameters(tmp_path / "out" / f"{index:06d}.png") for index in (0, 1))
    assert first[:2] == ("a seven", None) and second[:2] == ("a one", "a seven")
    assert (first[2]["Steps"], first[2]["CFG scale"], first[2]["Seed"], first[2]["Size"]) == ("3", "2", "5", "32x32")
    assert (second[2]["Steps"], second[2]["CFG scale"], second[2]["Seed"], second[2]["Size"]) == ("2", "7.5", "6", "24x16")
    assert [e["inputs"] for e in manifest(tmp_path / "out")] == \
        [{"num_inference_steps": 3, "guidance_scale": 2.0},
         {"num_inference_steps": 2, "negative_prompt": "a seven", "height": 16, "width": 24}]


def test_image_to_image_takes_every_items_image_from_the_flag_or_its_own_line(tmp_path, one_thread):
    from PIL import Image

    from diffblocks import SequentialPipelineBlocks
    from diffblocks.presets import embedded_model_path
    from diffblocks.presets.stable_diffusion import IMAGE2IMAGE_BLOCKS

    red, blue = Image.new("RGB", (32, 32), (220, 20, 20)), Image.new("RGB", (32, 32), (20, 20, 220))
    (tmp_path / "pictures").mkdir()
    red.save(tmp_path / "red.png")
    blue.save(tmp_path / "pictures" / "blue.png")
    lines = [{"prompt": "a seven"}, {"prompt": "a one", "image": "pictures/blue.png", "strength": 1.0}]
    path = tmp_path / "prompts.jsonl"  # a line's image is relative to this file, the flag's to the working folder
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert batch(path, "--out-dir", tmp_path / "out", "--seed", 5, "--image", tmp_path / "red.png",
                 "--strength", 0.5) == 0
    pipe = SequentialPipelineBlocks.from_blocks_dict(IMAGE2IMAGE_BLOCKS).init_pipeline(str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    for index, (image, strength) in enumerate([(red, 0.5), (blue, 1.0)]):
        expected = pipe(prompt=lines[index]["prompt"], image=image, strength=strength, num_inference_steps=2,
                        generator=torch.Generator().manual_seed(5 + index), output="images")[0]
        assert same_pixels(tmp_path / "out" / f"{index:06d}.png", expected)
        assert parameters(tmp_path / "out" / f"{index:06d}.png")[2]["Denoising strength"] == format(strength, "g")
    assert [e["inputs"].get("image") for e in manifest(tmp_path / "out")] == [str(tmp_path / "red.png"),
                                                                             "pictures/blue.png"]


def test_an_image_preset_needs_an_image_for_every_item_before_anything_loads(tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (32, 32)).save(tmp_path / "seven.png")
    (tmp_path / "fake.png").write_text("#!/bin/sh\n")
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a seven", "image": "seven.png"}\n{"prompt": "a one"}\n')
    assert batch(path, "--out-dir", tmp_path / "out", "--preset", "sd15-image2image") == 2
    assert 'preset \'sd15-image2image\' needs --image, or "image" on every line of the prompts file' in \
        capsys.readouterr().err
    path.write_text('{"prompt": "a seven", "image": "seven.png"}\n{"prompt": "a one", "image": "eight.png"}\n')
    assert batch(path, "--out-dir", tmp_path / "out") == 2
    assert "prompts.jsonl, line 2: 'image': eight.png: no such file" in capsys.readouterr().err
    assert batch(path, "--out-dir", tmp_path / "out", "--image", tmp_path / "fake.png") == 2
    assert f"--image {tmp_path / 'fake.png'}: cannot read the image" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_unknown_jsonl_input_stops_before_rendering(tmp_path, capsys):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a seven"}\n{"prompt": "a one", "num_inference_step": 3}\n')
    assert batch(path, "--out-dir", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "line 2: 'num_inference_step' (did you mean num_inference_steps?)" in err
    assert not list((tmp_path / "out").glob("*.png"))


def test_bad_flags_are_refused_before_loading(tmp_path, capsys):
    (tmp_path / "p.txt").write_text("a seven\n")
    assert batch(tmp_path / "p.txt", "--out-dir", tmp_path / "out", "--batch-size", 0) == 2
    assert "--batch-size must be a positive number, got 0" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert batch(tmp_path / "p.txt", "--out-dir", tmp_path / "file") == 2
    assert "--out-dir" in capsys.readouterr().err


def test_a_failing_item_is_named_and_what_was_done_is_kept(tmp_path, capsys, one_thread):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "a seven"}\n\n{"prompt": "a one", "num_inference_steps": -1}\n{"prompt": "a two"}\n')
    assert batch(path, "--out-dir", tmp_path / "out") == 2
    assert ("item 1 (line 3 of the prompts file) failed: block 'set_timesteps' (StableDiffusionSetTimestepsStep): "
            "input 'num_inference_steps' must be > 0, got -1") in capsys.readouterr().err
    assert set(done_entries(read_items(path, 0, {"num_inference_steps": 2}), tmp_path / "out")) == {0}


def test_hires_renders_every_item_as_run_does(tmp_path, capsys, one_thread):
    """``batch --hires``: each item's image equals the hires pass ``diffblocks run`` makes with that item's prompt,
    seed and size (a JSONL line's height and width are the first pass's)."""
    from PIL import Image

    lines = [{"prompt": "a seven"}, {"prompt": "a one", "height": 16, "width": 24}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert batch(path, "--out-dir", tmp_path / "out", "--seed", 5, "--hires", "1.5", "--hires-strength", "0.7",
                 "--hires-steps", "7") == 0
    capsys.readouterr()
    for index, line in enumerate(lines):
        size = ["--height", str(line.get("height", 32)), "--width", str(line.get("width", 32))]
        out = tmp_path / f"run{index}.png"
        assert main(["run", "--prompt", line["prompt"], "--seed", str(5 + index), *STEPS, *size, "--hires", "1.5",
                     "--hires-strength", "0.7", "--hires-steps", "7", "--device", "cpu", "--no-progress", "--out",
                     str(out)]) == 0
        ran, batched = Image.open(out), Image.open(tmp_path / "out" / f"{index:06d}.png")
        enlarged = [int(side * 1.5 / 8 + 0.5) * 8 for side in (int(size[3]), int(size[1]))]  # halves up: 36 -> 40
        assert batched.size == ran.size == tuple(enlarged)
        assert ran.tobytes() == batched.tobytes()
        assert ran.text["parameters"] == batched.text["parameters"]  # the same A1111 infotext as run writes
        again = tmp_path / f"again{index}.png"  # and run --from-image draws the item again from it
        assert main(["run", "--from-image", str(tmp_path / "out" / f"{index:06d}.png"), *STEPS, "--device", "cpu",
                     "--no-progress", "--out", str(again)]) == 0
        assert Image.open(again).tobytes() == batched.tobytes()


def test_flux_distilled_guidance_is_every_items_default_and_a_line_may_set_its_own(tmp_path, capsys, one_thread):
    """``batch --distilled-guidance 6``: each item draws what ``run`` draws at that guidance, unless its JSONL line
    says its own ``guidance_scale`` (FLUX.1's input); the infotexts are run's."""
    from PIL import Image
    from tiny_flux import make_flux_repo

    repo = make_flux_repo(tmp_path / "flux", dev=True)
    lines = [{"prompt": "a cat"}, {"prompt": "a dog", "guidance_scale": 2.0}]
    path = tmp_path / "prompts.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    flux = ["--model", str(repo), "--preset", "flux-text2image", "--height", "32", "--width", "32", *STEPS]
    assert batch(path, "--out-dir", tmp_path / "out", "--seed", 5, "--distilled-guidance", "6", *flux) == 0
    capsys.readouterr()
    for index, line in enumerate(lines):
        out = tmp_path / f"run{index}.png"
        assert main(["run", "--prompt", line["prompt"], "--seed", str(5 + index), *flux, "--distilled-guidance",
                     str(line.get("guidance_scale", 6)), "--device", "cpu", "--no-progress", "--out", str(out)]) == 0
        ran, batched = Image.open(out), Image.open(tmp_path / "out" / f"{index:06d}.png")
        assert ran.tobytes() == batched.tobytes() and ran.text["parameters"] == batched.text["parameters"]
