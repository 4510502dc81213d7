"""The ``diffblocks`` command: run and inspect, the console script, --version.

Mistakes are in test_cli_errors.py, the new run flags in test_cli_flags.py and test_cli_adapters.py, ComfyUI's
images read by --from-image in test_cli_comfy.py."""

import subprocess
import sys

import pytest
from PIL import Image

from diffblocks.cli import main


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *fragments):
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diffblocks: error: ")
    for fragment in fragments:
        assert fragment in lines[0]


def test_inspect_prints_tree_and_mermaid(capsys):
    code, out, _ = run_cli(capsys, "inspect", "sd15-text2image")
    assert code == 0
    assert "StableDiffusionDenoiseStep" in out and "Inputs:" in out and "Outputs:" in out
    assert "flowchart" in out and "-->" in out


@pytest.mark.parametrize("preset", ["sd15-controlnet", "sdxl-auto"])
def test_inspect_other_presets(capsys, preset):
    code, out, _ = run_cli(capsys, "inspect", preset)
    assert code == 0 and "flowchart" in out


def test_inspect_doc(capsys):
    code, out, _ = run_cli(capsys, "inspect", "sd15-auto", "--doc")
    assert code == 0 and "mask_image" in out


def test_run_embedded_model(capsys, tmp_path):
    out_file = tmp_path / "seven.png"
    code, out, _ = run_cli(capsys, "run", "--prompt", "a handwritten digit seven", "--steps", "4", "--seed", "1",
                           "--out", str(out_file), "--no-progress")
    assert code == 0
    assert str(out_file) in out
    assert Image.open(out_file).size == (32, 32)


def test_run_grid_with_guider(capsys, tmp_path):
    out_file = tmp_path / "grid.png"
    prompts = [arg for d in range(4) for arg in ("--prompt", f"the number {d}")]
    code, _, _ = run_cli(capsys, "run", *prompts, "--rows", "2", "--upscale", "2", "--steps", "3",
                         "--guider", "pag", "--guidance-scale", "4", "--out", str(out_file), "--no-progress")
    assert code == 0
    assert Image.open(out_file).size == (2 * 64 + 4, 2 * 64 + 4)  # 2x2 tiles of 64 px, gaps of 4 px


def test_run_image2image_on_the_embedded_model(capsys, tmp_path):
    from tiny_models import make_image

    make_image(size=32).save(tmp_path / "in.png")
    code, _, _ = run_cli(capsys, "run", "--prompt", "the number 2", "--preset", "sd15-image2image", "--image",
                         str(tmp_path / "in.png"), "--steps", "4", "--out", str(tmp_path / "out.png"), "--no-progress")
    assert code == 0 and Image.open(tmp_path / "out.png").size == (32, 32)


@pytest.mark.parametrize("family", ["sd15", "flux"])
def test_hires_paints_the_first_pass_again_larger_equal_to_the_presets(capsys, tmp_path, family):
    """``--hires 2``: text-to-image, a lanczos enlargement to 64 px and image-to-image at ``--hires-strength`` with the
    same prompt, steps and seed, as the two presets called from Python, bitwise; FLUX.1 too, whose image-to-image
    would paint at the model's default size unless told the enlarged one."""
    import numpy as np
    import torch
    from tiny_flux import make_flux_repo
    from tiny_models import build_pipeline

    from diffblocks.presets import embedded_model_path, flux, stable_diffusion

    if family == "sd15":
        repo, presets, size, flags = embedded_model_path(), stable_diffusion, {}, []
    else:
        repo, presets = make_flux_repo(tmp_path / "flux", dev=True), flux
        size, flags = dict(height=32, width=32), ["--model", str(tmp_path / "flux"), "--preset", "flux-text2image",
                                                  "--height", "32", "--width", "32"]
    call = dict(prompt="a handwritten seven", num_inference_steps=6, output="images")
    code, _, err = run_cli(capsys, "run", "--prompt", call["prompt"], "--steps", "6", "--seed", "3", "--hires", "2",
                           "--hires-strength", "0.6", "--hires-steps", "4", *flags,
                           "--out", str(tmp_path / "hires.png"), "--no-progress")
    assert code == 0, err
    first = build_pipeline(presets.TEXT2IMAGE_BLOCKS, repo)(generator=torch.Generator().manual_seed(3), **size, **call)[0]
    second = build_pipeline(presets.IMAGE2IMAGE_BLOCKS, repo)(
        image=first.resize((64, 64), Image.Resampling.LANCZOS), strength=0.6, height=64, width=64,
        generator=torch.Generator().manual_seed(3), **{**call, "num_inference_steps": 4})[0]
    got = Image.open(tmp_path / "hires.png").convert("RGB")
    assert got.size == (64, 64) and np.array_equal(np.asarray(got), np.asarray(second))
    _, _, fields = read_infotext(tmp_path / "hires.png")
    assert (fields["Size"], fields["Hires upscale"], fields["Denoising strength"], fields["Hires steps"]) == (
        "32x32", "2", "0.6", "4")  # A1111's Size is the first pass's


def test_distilled_guidance_is_fluxs_own_and_goes_into_the_image_and_back(capsys, tmp_path):
    """``--distilled-guidance`` sets the guidance FLUX.1-dev is conditioned on (the preset's ``guidance_scale``),
    bitwise the preset called with it; the image says it as Forge does (Distilled CFG Scale, beside the guider's CFG
    scale), and ``--from-image`` draws it again. Without the flag, the preset's own is written."""
    import numpy as np
    import torch
    from tiny_flux import make_flux_repo
    from tiny_models import build_pipeline

    from diffblocks.presets import flux

    repo = make_flux_repo(tmp_path / "flux", dev=True)
    flags = ["--model", str(repo), "--preset", "flux-text2image", "--height", "32", "--width", "32", "--steps", "3",
             "--seed", "2", "--prompt", "a cat", "--no-progress"]
    code, _, err = run_cli(capsys, "run", *flags, "--distilled-guidance", "6", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, repo)
    call = dict(prompt="a cat", num_inference_steps=3, height=32, width=32, output="images")
    expected = pipe(guidance_scale=6.0, generator=torch.Generator().manual_seed(2), **call)[0]
    plain = pipe(generator=torch.Generator().manual_seed(2), **call)[0]
    got = np.asarray(Image.open(tmp_path / "a.png").convert("RGB"))
    assert np.array_equal(got, np.asarray(expected)) and not np.array_equal(got, np.asarray(plain))
    _, _, fields = read_infotext(tmp_path / "a.png")
    assert (fields["Distilled CFG Scale"], fields["CFG scale"]) == ("6", "1")
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "a.png"), "--model", str(repo), "--preset",
                           "flux-text2image", "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    assert Image.open(tmp_path / "b.png").tobytes() == Image.open(tmp_path / "a.png").tobytes()
    code, _, err = run_cli(capsys, "run", *flags, "--out", str(tmp_path / "c.png"))
    assert code == 0, err
    assert read_infotext(tmp_path / "c.png")[2]["Distilled CFG Scale"] == "3.5"
    from PIL.PngImagePlugin import PngInfo  # Forge's FLUX.1 image: its Distilled CFG Scale, its model's files named

    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 3, Sampler: Euler, CFG scale: 1, Distilled CFG Scale: 6, Seed: 2, "
                                "Size: 32x32, Model: flux1-dev, Module 1: ae, Module 2: clip_l, Module 3: t5xxl_fp16")
    Image.new("RGB", (8, 8)).save(tmp_path / "forge.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "forge.png"), "--model", str(repo), "--preset",
                           "flux-text2image", "--out", str(tmp_path / "d.png"), "--no-progress")
    assert code == 0, err
    assert Image.open(tmp_path / "d.png").tobytes() == Image.open(tmp_path / "a.png").tobytes()
    assert (f"note: {tmp_path / 'forge.png'} was drawn by Forge with the transformer flux1-dev and ae, clip_l, "
            "t5xxl_fp16; give the transformer as --transformer FILE and the VAE as --vae FILE") in err


def read_infotext(path):
    """A1111's reading of a PNG's ``parameters``: prompt, negative prompt and the ``Key: value`` pairs."""
    lines = Image.open(path).text["parameters"].split("\n")
    negative = lines[1].removeprefix("Negative prompt: ") if lines[1].startswith("Negative prompt: ") else None
    return lines[0], negative, dict(pair.split(": ", 1) for pair in lines[-1].split(", "))


def test_the_model_is_named_as_a1111_names_it():
    from diffblocks.cli.infotext import model_name

    assert model_name(None) == "embedded"
    assert model_name("stabilityai/stable-diffusion-xl-base-1.0") == "stable-diffusion-xl-base-1.0"
    assert model_name("~/models/v1-5-pruned-emaonly.safetensors") == "v1-5-pruned-emaonly"
    assert model_name("/models/dreamshaper_8.ckpt") == "dreamshaper_8"


def test_the_png_says_how_it_was_made_as_a1111_writes_it(capsys, tmp_path):
    common = ["run", "--steps", "4", "--seed", "9", "--no-progress"]
    code, _, err = run_cli(capsys, *common, "--prompt", "a handwritten seven", "--negative-prompt", "blurry, faint",
                           "--scheduler", "euler-a", "--guidance-scale", "5", "--out", str(tmp_path / "a.png"))
    assert code == 0, err
    prompt, negative, fields = read_infotext(tmp_path / "a.png")
    assert (prompt, negative) == ("a handwritten seven", "blurry, faint")
    assert fields == {"Steps": "4", "Sampler": "Euler a", "CFG scale": "5", "Seed": "9", "Size": "32x32",
                      "Model": "embedded", "Version": fields["Version"]} and fields["Version"].startswith("diffblocks ")
    code, _, err = run_cli(capsys, *common, "--prompt", "数字の七", "--image", str(tmp_path / "a.png"), "--strength",
                           "0.6", "--out", str(tmp_path / "b.png"))
    assert code == 0, err
    prompt, negative, fields = read_infotext(tmp_path / "b.png")  # not Latin-1: an iTXt chunk
    assert prompt == "数字の七" and negative is None and fields["Denoising strength"] == "0.6"
    assert fields["Sampler"] == "DDIM" and fields["Steps"] == "4"  # the embedded model's own scheduler
    for name in ("c.jpg", "c.webp"):  # A1111's place there: EXIF UserComment, UTF-16 after "UNICODE\0"
        code, _, err = run_cli(capsys, *common, "--prompt", "数字の七", "--image", str(tmp_path / "a.png"), "--strength",
                               "0.6", "--out", str(tmp_path / name))
        assert code == 0, err
        comment = Image.open(tmp_path / name).getexif().get_ifd(0x8769)[0x9286]
        assert comment.startswith(b"UNICODE\0")
        assert comment[8:].decode("utf-16-be") == Image.open(tmp_path / "b.png").text["parameters"]


A1111_TEXT = """masterpiece, a cat
on a mat
Negative prompt: blurry, lowres
Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234, Size: 512x768, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, Lora hashes: "ink: abc, chalk: def", Version: v1.10.1"""


def test_an_a1111_infotext_reads_as_a1111_reads_it():
    from diffblocks.cli.infotext import parse

    prompt, negative, fields = parse(A1111_TEXT)
    assert (prompt, negative) == ("masterpiece, a cat\non a mat", "blurry, lowres")
    assert fields["Lora hashes"] == "ink: abc, chalk: def" and fields["Size"] == "512x768"
    assert (fields["Steps"], fields["Sampler"], fields["CFG scale"], fields["Seed"]) == ("20", "DPM++ 2M", "7", "1234")
    assert parse("just a prompt, with commas") == ("just a prompt, with commas", None, {})


def test_from_image_renders_the_same_image_again_and_flags_override_it(capsys, tmp_path):
    """``--from-image`` takes prompt, negative prompt, steps, sampler, CFG scale, seed, size and the hires pass (its
    scale, strength and steps) from an image ``run`` wrote: the same pixels again; a flag given wins over the
    image's value."""
    made = ["--prompt", "a handwritten seven", "--negative-prompt", "blurry", "--steps", "5", "--seed", "11",
            "--scheduler", "euler-a", "--guidance-scale", "5", "--hires", "1.5", "--hires-strength", "0.6",
            "--hires-steps", "8"]
    code, _, err = run_cli(capsys, "run", *made, "--out", str(tmp_path / "a.png"), "--no-progress")
    assert code == 0, err
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "a.png"), "--out", str(tmp_path / "b.png"),
                           "--no-progress")
    assert code == 0, err
    a, b = Image.open(tmp_path / "a.png"), Image.open(tmp_path / "b.png")
    assert a.size == (48, 48) and a.tobytes() == b.tobytes() and a.text["parameters"] == b.text["parameters"]
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "a.png"), "--seed", "12",
                           "--out", str(tmp_path / "c.png"), "--no-progress")
    assert code == 0, err
    _, _, fields = read_infotext(tmp_path / "c.png")
    assert fields["Seed"] == "12" and fields["Sampler"] == "Euler a" and fields["Hires upscale"] == "1.5"
    assert Image.open(tmp_path / "c.png").tobytes() != a.tobytes()


def test_from_image_takes_a1111s_extra_networks_out_of_the_prompt_and_names_them(capsys, tmp_path):
    """``<lora:ink:0.8>`` in an A1111 prompt is no text to encode: A1111 takes it out, so does ``--from-image``,
    drawing what the prompt without it draws, and says so on stderr; so it says of a hires upscaler it replaces, of
    the VAE, ControlNet and IP-Adapter the image names, and of the passes it does not run (the hires pass's own
    prompt and sampler, SDXL's refiner, ADetailer's)."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "a handwritten seven<lora:ink:0.8><hypernet:soft:1>\nSteps: 3, Sampler: Euler a, "
                                "Seed: 11, Size: 32x32, Hires upscale: 1.5, Hires upscaler: 4x-UltraSharp, "
                                "VAE: vae-ft-mse-840000-ema-pruned.safetensors, ControlNet 0: \"Module: canny, Model: "
                                "control_v11p_sd15_canny [d14c016b], Weight: 1, Guidance Start: 0, Guidance End: 1\", "
                                "ControlNet 1: \"Module: ip-adapter_clip_sd15, Model: ip-adapter_sd15 [6a3f6166]\", "
                                "Hires prompt: a bold seven, Hires sampler: DPM++ 2M, Refiner: sd_xl_refiner_1.0 "
                                "[7440042bbd], Refiner switch at: 0.8, ADetailer model: face_yolov8n.pt, Emphasis: No "
                                "norm, Seed resize from: 48x48")
    Image.new("RGB", (8, 8)).save(tmp_path / "tagged.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "tagged.png"),
                           "--out", str(tmp_path / "a.png"), "--no-progress")
    assert code == 0, err
    assert (f"note: the prompt of {tmp_path / 'tagged.png'} names <lora:ink:0.8>, <hypernet:soft:1>, taken out of it "
            "as A1111 does; give a LoRA as --lora FILE:WEIGHT") in err
    assert (f"note: {tmp_path / 'tagged.png'} was enlarged by the 4x-UltraSharp upscaler; the hires pass here "
            "enlarges by lanczos") in err
    assert (f"note: {tmp_path / 'tagged.png'} was decoded by the VAE vae-ft-mse-840000-ema-pruned.safetensors; give it "
            "as --vae FILE") in err
    assert (f"note: {tmp_path / 'tagged.png'} was drawn with sd-webui-controlnet's control_v11p_sd15_canny; give each "
            "as --controlnet FILE --control-image IMAGE") in err
    assert (f"note: {tmp_path / 'tagged.png'} was drawn with the IP-Adapter ip-adapter_sd15; give it as --ip-adapter "
            "FILE --ip-adapter-image IMAGE") in err
    for what in ("the hires pass's own prompt (it takes the first pass's)", "the hires pass's own sampler 'DPM++ 2M'",
                 "SDXL's refiner pass (sd_xl_refiner_1.0 [7440042bbd]), which diffblocks does not run",
                 "ADetailer's pass (face_yolov8n.pt: faces found and painted again)",
                 "A1111's 'No norm' emphasis (prompt weights are read with its Original one here)",
                 "A1111's seed resize from 48x48 (noise drawn at that size, then cut)"):
        assert f"note: {tmp_path / 'tagged.png'} was drawn with {what}; not taken here" in err
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten seven", "--steps", "3", "--scheduler", "euler-a",
                           "--seed", "11", "--hires", "1.5", "--out", str(tmp_path / "b.png"), "--no-progress")
    assert code == 0, err
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()
    assert read_infotext(tmp_path / "a.png")[0] == "a handwritten seven"


def test_from_image_says_when_an_image_holds_no_parameters(capsys, tmp_path):
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("parameters", "Steps: 4, Seed: 3, Size: 32x32")  # the parameters without a prompt
    Image.new("RGB", (8, 8)).save(tmp_path / "no-prompt.png", pnginfo=info)
    code, _, err = run_cli(capsys, "run", "--from-image", str(tmp_path / "no-prompt.png"), "--out", str(tmp_path / "x.png"))
    assert_one_line_error(code, err, f"needs --prompt: only --redux runs without one ({tmp_path / 'no-prompt.png'} "
                                     "holds none)")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    for path, fragment in ((tmp_path / "plain.png", "holds no generation parameters"),
                           (tmp_path / "none.png", "cannot read the image")):
        code, _, err = run_cli(capsys, "run", "--from-image", str(path), "--out", str(tmp_path / "x.png"))
        assert_one_line_error(code, err, f"--from-image {path}: {fragment}")


@pytest.mark.slow
def test_run_sdxl_preset_on_a_given_model(capsys, tmp_path):
    from tiny_models import make_sdxl_repo

    repo = make_sdxl_repo(tmp_path / "sdxl")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--preset", "sdxl-text2image", "--model", str(repo),
                           "--steps", "2", "--out", str(tmp_path / "cat.png"), "--no-progress")
    assert code == 0, err
    assert Image.open(tmp_path / "cat.png").size == (32, 32)


def test_progress_bar_is_shown_unless_disabled(capsys, tmp_path):
    _, _, err = run_cli(capsys, "run", "--prompt", "1", "--steps", "3", "--out", str(tmp_path / "a.png"))
    assert "3/3" in err
    _, _, err = run_cli(capsys, "run", "--prompt", "1", "--steps", "3", "--out", str(tmp_path / "b.png"),
                        "--no-progress")
    assert "3/3" not in err


def test_missing_sdxl_module_is_a_clear_error(capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "diffblocks.presets.stable_diffusion_xl", None)
    code, _, err = run_cli(capsys, "inspect", "sdxl-text2image")
    assert_one_line_error(code, err, "diffblocks.presets.stable_diffusion_xl", "cannot be imported")


def test_bad_arguments_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--prompt", "a cat", "--steps", "three"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--steps" in err[0] and "'three'" in err[0]
    code, _, err = run_cli(capsys, "run", "--steps", "3")
    assert_one_line_error(code, err, "diffblocks run needs --prompt")


def test_console_entry_point_exits_2_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "diffblocks.cli", "run", "--prompt", "x", "--model",
                             str(tmp_path / "missing")], capture_output=True, text=True)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().startswith("diffblocks: error: --model ")
    assert "no such folder" in result.stderr


def test_version_subprocess():
    result = subprocess.run([sys.executable, "-m", "diffblocks.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    import torch

    from diffblocks import __version__

    line = result.stdout.strip()
    # read from torch's package metadata, which may lack the local tag torch.__version__ has (2.11.0 / 2.11.0+cu130)
    assert line.startswith(f"diffblocks {__version__} ") and f"torch {torch.__version__.split('+')[0]}" in line


def test_a_reader_that_stops_early_gets_no_traceback():
    """``diffblocks inspect ... | head -1``: the closed pipe ends the command quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "diffblocks.cli", "inspect", "sd15-auto"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.readline()
    proc.stdout.close()  # as `head -1` does once it has its line
    assert proc.wait(timeout=120) == 0
    assert b"Traceback" not in proc.stderr.read()
