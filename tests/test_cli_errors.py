"""``diffblocks run`` mistakes: one line on stderr naming the flag, exit code 2, and, for everything the CLI
can check itself, no model loaded first. The pipeline's own complaints are reworded to name the flag."""

import os

import pytest
from test_cli import assert_one_line_error, run_cli
from tiny_models import make_image

from diffblocks.cli import run as run_command
from diffblocks.cli.messages import cli_message
from diffblocks.modular_pipelines.errors import BlockExecutionError, InputValueError, MissingInputError


@pytest.fixture
def no_model(monkeypatch):
    """Fail the test if a pipeline is built or a model loaded."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the mistake was reported")

    from diffblocks.components.models.controlnet import ControlNetModel
    from diffblocks.modular_pipelines.pipeline import ModularPipeline

    monkeypatch.setattr(run_command, "build_pipeline", refuse)
    monkeypatch.setattr(ModularPipeline, "load_components", refuse)
    monkeypatch.setattr(ControlNetModel, "from_pretrained", refuse)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """An image, a text file, a folder with a ControlNet config, an IP-Adapter folder without an encoder."""
    root = tmp_path_factory.mktemp("cli_inputs")
    make_image(size=32).save(root / "in.png")
    (root / "notes.txt").write_text("not an image")
    (root / "cn").mkdir()
    (root / "cn" / "config.json").write_text("{}")
    (root / "bare").mkdir()
    (root / "ip").mkdir()
    (root / "ip" / "a.bin").write_bytes(b"")
    (root / "ip" / "b.bin").write_bytes(b"")
    (root / "ip1").mkdir()
    (root / "ip1" / "only.bin").write_bytes(b"")
    return root


PROMPT = ["run", "--prompt", "x", "--no-progress"]
# (extra argv, fragments of the one stderr line); {d} is the folder of `files`
MISTAKES = [
    (["--height", "36"], ["--height must be a positive multiple of 8, got 36"]),
    (["--width", "-8"], ["--width must be a positive multiple of 8, got -8"]),
    (["--steps", "0"], ["--steps must be a positive number, got 0"]),
    (["--steps", "-3"], ["--steps must be a positive number"]),
    (["--rows", "0"], ["--rows must be a positive number"]),
    (["--image", "{d}/in.png", "--strength", "1.5"], ["--strength must be in (0, 1], got 1.5"]),
    (["--image", "{d}/in.png", "--strength", "-0.1"], ["--strength must be in (0, 1]"]),
    (["--image", "{d}/in.png", "--strength", "0"], ["--strength must be in (0, 1], got 0.0"]),
    (["--image", "{d}/in.png", "--strength", "nan"], ["--strength must be in (0, 1], got nan"]),
    (["--guidance-scale", "nan"], ["--guidance-scale must be a finite number, got nan"]),
    (["--guidance-scale", "inf"], ["--guidance-scale must be a finite number"]),
    (["--strength", "0.5"], ["--strength needs --image"]),
    (["--mask-image", "{d}/in.png"], ["--mask-image needs --image"]),
    (["--control-image", "{d}/in.png"], ["--control-image needs --controlnet"]),
    (["--controlnet", "{d}/cn"], ["--controlnet needs --control-image"]),
    (["--ip-adapter-image", "{d}/in.png"], ["--ip-adapter-image needs --ip-adapter"]),
    (["--ip-adapter", "{d}/ip1/only.bin"], ["--ip-adapter needs --ip-adapter-image"]),
    (["--ip-adapter-scale", "0.5"], ["--ip-adapter-scale needs --ip-adapter"]),
    (["--controlnet-scale", "0.5"], ["--controlnet-scale needs --controlnet"]),
    (["--image", "/no/such.png"], ["--image /no/such.png: file not found"]),
    (["--image", "{d}/notes.txt"], ["--image {d}/notes.txt: cannot read the image"]),
    (["--image", "{d}"], ["--image {d}: is a folder"]),
    (["--image", "{d}/in.png", "--mask-image", "{d}/notes.txt"], ["--mask-image {d}/notes.txt: cannot read the image"]),
    (["--controlnet", "{d}/cn", "--control-image", "/no/c.png"], ["--control-image /no/c.png: file not found"]),
    (["--ip-adapter", "{d}/ip1/only.bin", "--ip-adapter-image", "{d}/notes.txt"], ["--ip-adapter-image", "cannot read"]),
    (["--controlnet", "/no/such/cn", "--control-image", "{d}/in.png"], ["--controlnet /no/such/cn: no such folder"]),
    (["--controlnet", "{d}/bare", "--control-image", "{d}/in.png"], ["--controlnet {d}/bare: has no config.json"]),
    (["--ip-adapter", "/no/ip.bin", "--ip-adapter-image", "{d}/in.png"], ["--ip-adapter /no/ip.bin: not found"]),
    (["--ip-adapter", "{d}/ip", "--ip-adapter-image", "{d}/in.png"], ["--ip-adapter {d}/ip: holds 2 weights files",
                                                                        "a.bin, b.bin"]),
    (["--ip-adapter", "{d}/ip1/only.bin", "--ip-adapter-image", "{d}/in.png"], ["--ip-adapter", "no image encoder"]),
    (["--ip-adapter", "h94/IP-Adapter", "--ip-adapter-image", "{d}/in.png"], ["--ip-adapter h94/IP-Adapter: not found",
                                                                               "REPO/SUBFOLDER/FILE"]),
    (["--preset", "sd16-text2image"], ["--preset: unknown preset 'sd16-text2image'", "sd15-text2image"]),
    (["--preset", "sd15-text2image", "--image", "{d}/in.png"], ["preset 'sd15-text2image' takes no --image",
                                                                 "leave out --preset"]),
    (["--preset", "sd15-image2image"], ["preset 'sd15-image2image' needs --image"]),
    (["--preset", "sd15-controlnet"], ["preset 'sd15-controlnet' needs --controlnet"]),
    (["--preset", "sd15-ip-adapter"], ["preset 'sd15-ip-adapter' needs --ip-adapter"]),
    (["--preset", "flux-kontext", "--image", "{d}/in.png", "--controlnet", "{d}/cn", "--control-image", "{d}/in.png"],
     ["--controlnet works with the text2image, image2image, inpaint workflows, not preset 'flux-kontext'"]),
    (["--preset", "sdxl-text2image"], ["preset 'sdxl-text2image' needs --model: the embedded model is"]),
    (["--model", "/no/such/folder"], ["--model /no/such/folder: no such folder"]),
    (["--model", "{d}/in.png"], ["--model {d}/in.png: is a file"]),
    (["--guider", "nope"], ["--guider: unknown guider 'nope'", "pag"]),
    (["--scheduler", "eulr"], ["--scheduler: unknown scheduler 'eulr' (did you mean euler?)", "dpm++"]),
    (["--device", "nope"], ["--device nope:"]),
    (["--hires", "1"], ["--hires must be a factor in (1, 8]", "got 1.0"]),
    (["--hires", "nan"], ["--hires must be a factor in (1, 8]"]),
    (["--hires-strength", "0.3"], ["--hires-strength needs --hires"]),
    (["--hires", "2", "--hires-strength", "0"], ["--hires-strength must be in (0, 1], got 0.0"]),
    (["--distilled-guidance", "4"], ["preset 'sd15-text2image' takes no --distilled-guidance"]),
    (["--preset", "flux", "--distilled-guidance", "-1"], ["--distilled-guidance must be a finite number >= 0"]),
    (["--hires-steps", "10"], ["--hires-steps needs --hires"]),
    (["--hires", "2", "--hires-steps", "0"], ["--hires-steps must be a positive number", "got 0"]),
    (["--hires", "2", "--image", "{d}/in.png"], ["--hires works with the text2image workflows, not preset "
                                                 "'sd15-image2image'"]),
]


@pytest.mark.parametrize("argv, fragments", MISTAKES, ids=[" ".join(m[0]) for m in MISTAKES])
def test_mistakes_are_one_line_before_any_model_loads(capsys, tmp_path, files, no_model, argv, fragments):
    argv = [a.format(d=files) for a in argv]
    code, _, err = run_cli(capsys, *PROMPT, *argv, "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, *[f.format(d=files) for f in fragments])


def test_out_mistakes_come_before_any_model_loads(capsys, tmp_path, no_model):
    code, _, err = run_cli(capsys, *PROMPT, "--out", str(tmp_path / "missing" / "x.png"))
    assert_one_line_error(code, err, f"--out {tmp_path / 'missing' / 'x.png'}:", "does not exist")
    assert not (tmp_path / "missing").exists()
    code, _, err = run_cli(capsys, *PROMPT, "--out", str(tmp_path))
    assert_one_line_error(code, err, f"--out {tmp_path}: names a folder")
    code, _, err = run_cli(capsys, *PROMPT, "--out", str(tmp_path / "x.nope"))
    assert_one_line_error(code, err, "--out", "cannot tell the image format")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs a folder this user cannot write in")
def test_out_in_a_read_only_folder(capsys, tmp_path, no_model):
    tmp_path.chmod(0o500)
    try:
        code, _, err = run_cli(capsys, *PROMPT, "--out", str(tmp_path / "x.png"))
    finally:
        tmp_path.chmod(0o700)
    assert_one_line_error(code, err, "--out", "cannot write in the folder")


def test_cuda_without_cuda_is_refused_before_loading(capsys, tmp_path, no_model, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, _, err = run_cli(capsys, *PROMPT, "--device", "cuda", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--device cuda: CUDA is not available")
    monkeypatch.setattr(torch.mps, "is_available", lambda: False)
    code, _, err = run_cli(capsys, *PROMPT, "--device", "mps", "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--device mps: MPS is not available")  # the check serve makes too


# --- the pipeline's own checks, worded with flags -----------------------------------------------------


def test_too_few_steps_for_the_strength_names_the_flags(capsys, tmp_path):
    make_image(size=32).save(tmp_path / "in.png")
    code, _, err = run_cli(capsys, *PROMPT, "--image", str(tmp_path / "in.png"), "--strength", "0.1", "--steps", "4",
                           "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, "--strength", "--steps", "(in block 'set_timesteps')")
    assert "num_inference_steps" not in err and "strength=" not in err


@pytest.mark.parametrize("argv, fragments", [
    (["--steps", "0"], ["--steps must be > 0, got 0", "(in block 'set_timesteps')"]),
    (["--image", "{d}/in.png", "--strength", "1.5", "--steps", "2"], ["--strength must be in (0, 1], got 1.5"]),
])
def test_pipeline_errors_name_the_flag_when_the_cli_lets_them_through(capsys, tmp_path, files, monkeypatch, argv,
                                                                     fragments):
    monkeypatch.setattr(run_command, "check_numbers", lambda args: None)  # let the pipeline see the bad value
    code, _, err = run_cli(capsys, *PROMPT, *[a.format(d=files) for a in argv], "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, *fragments)
    assert "num_inference_steps" not in err and "'strength'" not in err


@pytest.mark.parametrize("error, expected", [
    (InputValueError.invalid("strength", "set_timesteps", "Img2ImgSetTimesteps", "must be in (0, 1]", 1.5),
     "--strength must be in (0, 1], got 1.5 (in block 'set_timesteps')"),
    (InputValueError.invalid("num_inference_steps", None, "SetTimesteps", "must be > 0", 0),
     "--steps must be > 0, got 0 (in block SetTimesteps)"),
    (BlockExecutionError.failed("set_timesteps", "SetTimesteps", {"strength": 0.01},
                                ValueError("strength=0.01 leaves 0 denoising steps; raise strength or steps")),
     "--strength 0.01 leaves 0 denoising steps; raise --strength or steps (in block 'set_timesteps')"),
    (MissingInputError.required("control_image", "controlnet_input", "ControlNetInputStep"),
     "block 'controlnet_input' (ControlNetInputStep) needs the required --control-image, but it was not given"),
    (InputValueError.invalid("guidance_scale", None, None, "must be finite", float("nan")),
     "--guidance-scale must be finite, got nan (in pipeline)"),
    # ordinary words stay words; only quoted or name=value forms of 'image', 'height', 'width' are flags
    (BlockExecutionError.failed("decode", "Decode", {}, RuntimeError("the image height is odd")),
     "block 'decode' (Decode) failed: RuntimeError: the image height is odd"),
])
def test_cli_message_rewords_input_names_as_flags(error, expected):
    assert cli_message(error) == expected


def test_inspect_unknown_preset(capsys):
    code, _, err = run_cli(capsys, "inspect", "sd15-txt2image")
    assert_one_line_error(code, err, "unknown preset 'sd15-txt2image' (did you mean sd15-text2image?)")
