"""``diffblocks run`` flags on the embedded model: each gives the image the Python API gives for the same
inputs (bitwise: the same computation on the CPU, saved as PNG; without --device the CLI would take
CUDA where there is one), and a different image than without it."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import run_cli
from tiny_models import make_image, make_mask

from diffblocks import SequentialPipelineBlocks, cli
from diffblocks.cli.choices import SCHEDULER_NAMES, scheduler_class
from diffblocks.components.schedulers import SCHEDULERS, EulerDiscreteScheduler
from diffblocks.presets import embedded_model_path, stable_diffusion

STEPS = 3


def cli_pixels(capsys, tmp_path, *argv) -> np.ndarray:
    out = tmp_path / f"cli{len(list(tmp_path.iterdir()))}.png"
    code, _, err = run_cli(capsys, "run", "--prompt", "a handwritten digit seven", "--steps", str(STEPS),
                           "--seed", "3", "--no-progress", "--device", "cpu", "--out", str(out), *argv)
    assert code == 0, err
    return np.asarray(Image.open(out).convert("RGB"))


def api_pixels(blocks=stable_diffusion.TEXT2IMAGE_BLOCKS, scheduler=None, guider=None, sampling=None,
               **inputs) -> np.ndarray:
    pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(str(embedded_model_path()))
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    if scheduler is not None or sampling:
        pipe.update_components(scheduler=(scheduler or type(pipe.scheduler)).from_config(
            {**pipe.scheduler.config, **(sampling or {})}))
    if guider is not None:
        pipe.update_components(guider=guider)
    image = pipe(prompt="a handwritten digit seven", num_inference_steps=STEPS,
                 generator=torch.Generator().manual_seed(3), output="images", **inputs)[0]
    return np.asarray(image)


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return api_pixels()


@pytest.fixture
def pictures(tmp_path):
    make_image(5, size=32).save(tmp_path / "in.png")
    make_mask(size=32).save(tmp_path / "mask.png")
    return tmp_path


def test_no_flags_is_the_api_text2image(capsys, tmp_path, plain):
    assert np.array_equal(cli_pixels(capsys, tmp_path), plain)


def test_negative_prompt(capsys, tmp_path, plain):
    got = cli_pixels(capsys, tmp_path, "--negative-prompt", "a handwritten digit one")
    assert np.array_equal(got, api_pixels(negative_prompt="a handwritten digit one"))
    assert not np.array_equal(got, plain)


def test_scheduler_euler_is_the_api_with_euler_discrete(capsys, tmp_path, plain):
    got = cli_pixels(capsys, tmp_path, "--scheduler", "euler")
    assert np.array_equal(got, api_pixels(scheduler=EulerDiscreteScheduler))
    assert not np.array_equal(got, plain)  # the embedded model's own scheduler is DDIM


@pytest.mark.parametrize("flags, scheduler, sampling", [
    (("--prediction-type", "v_prediction"), None, {"prediction_type": "v_prediction"}),
    (("--prediction-type", "v", "--zero-snr", "--scheduler", "euler"), EulerDiscreteScheduler,
     {"prediction_type": "v_prediction", "rescale_betas_zero_snr": True}),
    (("--zero-snr",), None, {"rescale_betas_zero_snr": True})])
def test_prediction_type_and_zero_snr_are_the_schedulers_config(capsys, tmp_path, plain, flags, scheduler, sampling):
    """For a checkpoint whose file does not say how it samples (ComfyUI's ModelSamplingDiscrete): the scheduler's
    config changed, and the image says so, so that --from-image draws it again."""
    from test_cli import read_infotext

    got = cli_pixels(capsys, tmp_path, *flags)
    assert np.array_equal(got, api_pixels(scheduler=scheduler, sampling=sampling))
    assert not np.array_equal(got, plain)
    drawn = sorted(tmp_path.iterdir())[-1]
    _, _, fields = read_infotext(drawn)
    assert fields.get("Prediction type") == sampling.get("prediction_type")
    assert fields.get("Zero SNR") == ("True" if sampling.get("rescale_betas_zero_snr") else None)
    again = cli_pixels(capsys, tmp_path, "--from-image", str(drawn))
    assert np.array_equal(again, got)


@pytest.mark.parametrize("scheduler, spacing", [("dpm++", "karras"), ("euler", "exponential"), ("unipc", "karras"),
                                                ("heun", "karras"), ("lms", "karras"), ("euler", "beta"),
                                                ("dpm2", "exponential"), ("dpm2-a", "karras"),
                                                ("euler", "sgm_uniform"), ("ddim", "Simple")])
def test_schedule_type_spaces_the_schedulers_noise_levels(capsys, tmp_path, scheduler, spacing):
    """A1111's Schedule type (ComfyUI's scheduler widget): the scheduler's sigmas switch (SGM Uniform and Simple:
    trailing timesteps), written as A1111 1.9 writes it and read back; an older A1111 image names it in its sampler
    ("DPM++ 2M Karras")."""
    from test_cli import read_infotext

    from diffblocks.cli.choices import SCHEDULE_NAMES, SCHEDULE_TYPES, schedule_key

    cls = scheduler_class(scheduler)
    got = cli_pixels(capsys, tmp_path, "--scheduler", scheduler, "--schedule-type", spacing.upper())
    assert np.array_equal(got, api_pixels(scheduler=cls, sampling=SCHEDULE_TYPES[schedule_key(spacing)]))
    assert not np.array_equal(got, api_pixels(scheduler=cls))
    drawn = sorted(tmp_path.iterdir())[-1]
    _, _, fields = read_infotext(drawn)
    assert fields["Schedule type"] == SCHEDULE_NAMES[schedule_key(spacing)]
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--from-image", str(drawn)), got)
    if scheduler == "dpm++":
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        info.add_text("parameters", "a handwritten digit seven\nSteps: 3, Sampler: DPM++ 2M Karras, CFG scale: 7.5, "
                                    "Seed: 3, Size: 32x32, Model: embedded")
        Image.new("RGB", (32, 32)).save(tmp_path / "old.png", pnginfo=info)
        assert np.array_equal(cli_pixels(capsys, tmp_path, "--from-image", str(tmp_path / "old.png")), got)


def test_dpm_sde_is_dpm_with_the_sde_algorithm_and_reads_back(capsys, tmp_path):
    """A1111's DPM++ 2M SDE (ComfyUI's dpmpp_2m_sde): DPM++ with its SDE algorithm, noise drawn from the seed; with
    Karras spacing, as it is most used, written and read back."""
    from test_cli import read_infotext

    from diffblocks.components.schedulers import DPMSolverMultistepScheduler

    got = cli_pixels(capsys, tmp_path, "--scheduler", "dpm++-sde", "--schedule-type", "karras")
    assert np.array_equal(got, api_pixels(scheduler=DPMSolverMultistepScheduler, sampling={
        "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}))
    assert not np.array_equal(got, api_pixels(scheduler=DPMSolverMultistepScheduler, sampling={
        "use_karras_sigmas": True}))
    drawn = sorted(tmp_path.iterdir())[-1]
    fields = read_infotext(drawn)[2]
    assert (fields["Sampler"], fields["Schedule type"]) == ("DPM++ 2M SDE", "Karras")
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--from-image", str(drawn)), got)


def test_a_schedule_type_the_scheduler_lacks_is_one_clear_error(capsys, tmp_path):
    from test_cli import assert_one_line_error

    for flags in (("--scheduler", "ddim"), ()):  # given, or the model's own (DDIM), read once loaded
        code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--schedule-type", "karras", *flags, "--no-progress",
                               "--out", str(tmp_path / "a.png"))
        assert_one_line_error(code, err, "--schedule-type karras: DDIMScheduler has no such spacing (euler, heun, "
                                         "lms, dpm2, dpm2-a, dpm++ and unipc do: give --scheduler)")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--schedule-type", "beta2", "--scheduler", "euler",
                           "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "--schedule-type: unknown schedule type 'beta2'",
                          "karras, exponential, beta, sgm-uniform, simple")
    assert not (tmp_path / "a.png").exists()


def test_prompts_read_a1111s_syntax_unless_plain(capsys, tmp_path):
    """Weights, BREAK and long prompts as A1111 reads them (the weighted text encoder in the preset); with
    --plain-prompts, as diffusers' pipelines read them (the preset as it is: the brackets are text)."""
    from diffblocks.blocks.stable_diffusion import StableDiffusionWeightedTextEncoderStep

    prompt, negative = "a (handwritten:1.4) digit, BREAK seven", "(blurry:1.2), faint"

    def drawn(*flags):
        out = tmp_path / f"{len(flags)}.png"
        code, _, err = run_cli(capsys, "run", "--prompt", prompt, "--negative-prompt", negative, "--steps", str(STEPS),
                               "--seed", "3", "--no-progress", "--device", "cpu", "--out", str(out), *flags)
        assert code == 0, err
        return np.asarray(Image.open(out).convert("RGB"))

    def api(text_encoder=None):
        blocks = stable_diffusion.TEXT2IMAGE_BLOCKS.copy()
        if text_encoder is not None:
            blocks["text_encoder"] = text_encoder
        pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(str(embedded_model_path()))
        pipe.load_components()
        pipe.set_progress_bar_config(disable=True)
        return np.asarray(pipe(prompt=prompt, negative_prompt=negative, num_inference_steps=STEPS,
                               generator=torch.Generator().manual_seed(3), output="images")[0])

    got, plain = drawn(), drawn("--plain-prompts")
    assert np.array_equal(got, api(StableDiffusionWeightedTextEncoderStep))
    assert np.array_equal(plain, api())
    assert not np.array_equal(got, plain)


def test_a_prompt_that_does_not_parse_is_one_error_before_loading(capsys, tmp_path):
    from test_cli import assert_one_line_error

    code, _, err = run_cli(capsys, "run", "--prompt", "a (cat", "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "--prompt must be a prompt in A1111's syntax", "'(' at position 2 is never "
                                     "closed", "--plain-prompts reads it as plain text")
    code, _, err = run_cli(capsys, "run", "--prompt", "a (cat", "--plain-prompts", "--no-progress",
                           "--out", str(tmp_path / "a.png"))
    assert code == 0, err


def test_clip_skip_counts_as_a1111_counts(capsys, tmp_path, plain):
    """A1111's Clip skip 2 (CLIP's layer before the last) is the preset's clip_skip 1; 1 is its own last layer. It
    goes into the image as A1111 writes it, and back."""
    from test_cli import read_infotext

    assert np.array_equal(cli_pixels(capsys, tmp_path, "--clip-skip", "1"), plain)
    got = cli_pixels(capsys, tmp_path, "--clip-skip", "2")
    assert np.array_equal(got, api_pixels(clip_skip=1))
    assert not np.array_equal(got, plain)
    drawn = sorted(tmp_path.iterdir())[-1]
    assert read_infotext(drawn)[2]["Clip skip"] == "2"
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--from-image", str(drawn)), got)


def test_clip_skip_on_sdxl_counts_from_the_layer_it_reads():
    """SDXL reads the layer before the last already (A1111's 1 and 2 alike); diffusers' clip_skip counts from it."""
    from diffblocks.cli.flags import clip_skip_input

    assert [clip_skip_input(n, "sdxl-text2image") for n in (1, 2, 3)] == [None, None, 1]
    assert [clip_skip_input(n, "sd15-inpaint") for n in (1, 2, 3)] == [None, 1, 2]


def test_clip_skip_is_checked_before_loading(capsys, tmp_path):
    from test_cli import assert_one_line_error

    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--clip-skip", "0", "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "--clip-skip", "a positive number (A1111's: 1 is CLIP's last layer)")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--preset", "flux-text2image", "--clip-skip", "2",
                           "--model", str(tmp_path), "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "preset 'flux-text2image' takes no --clip-skip")


def test_prediction_type_is_checked_before_loading(capsys, tmp_path):
    from test_cli import assert_one_line_error

    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--prediction-type", "x0",
                           "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "--prediction-type: unknown prediction type 'x0'", "epsilon, v_prediction")
    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--preset", "flux-text2image", "--zero-snr", "--model",
                           str(tmp_path), "--out", str(tmp_path / "a.png"))
    assert_one_line_error(code, err, "--zero-snr works with the SD 1.x / 2.x, SDXL workflows, not preset "
                                     "'flux-text2image'")
    assert not (tmp_path / "a.png").exists()


@pytest.mark.parametrize("name, class_name", [
    ("ddim", "DDIMScheduler"), ("euler", "EulerDiscreteScheduler"), ("euler-a", "EulerAncestralDiscreteScheduler"),
    ("Euler_A", "EulerAncestralDiscreteScheduler"), ("dpm++", "DPMSolverMultistepScheduler"),
    ("unipc", "UniPCMultistepScheduler"), ("lcm", "LCMScheduler"), ("ddpm", "DDPMScheduler"),
    ("UniPCMultistepScheduler", "UniPCMultistepScheduler"), ("eulerdiscretescheduler", "EulerDiscreteScheduler"),
    ("heun", "HeunDiscreteScheduler"), ("dpm++-sde", "DPMSolverMultistepScheduler"), ("lms", "LMSDiscreteScheduler"),
    ("EulerDiscrete", "EulerDiscreteScheduler"), ("dpm2", "KDPM2DiscreteScheduler"),
    ("DPM2-A", "KDPM2AncestralDiscreteScheduler"), ("kdpm2discretescheduler", "KDPM2DiscreteScheduler"),
])
def test_scheduler_names(name, class_name):
    assert scheduler_class(name) is SCHEDULERS[class_name]


@pytest.mark.parametrize("name", sorted(SCHEDULER_NAMES))
def test_every_scheduler_name_runs(capsys, tmp_path, name):
    assert cli_pixels(capsys, tmp_path, "--scheduler", name).shape == (32, 32, 3)


def test_strength_picks_image2image_and_matches_the_api(capsys, tmp_path, pictures):
    image = Image.open(pictures / "in.png").convert("RGB")
    got = cli_pixels(capsys, tmp_path, "--image", str(pictures / "in.png"), "--strength", "0.7")
    blocks = stable_diffusion.IMAGE2IMAGE_BLOCKS
    assert np.array_equal(got, api_pixels(blocks, image=image, strength=0.7))
    assert not np.array_equal(got, api_pixels(blocks, image=image, strength=1.0))
    explicit = cli_pixels(capsys, tmp_path, "--preset", "sd15-image2image", "--image", str(pictures / "in.png"),
                          "--strength", "0.7")
    assert np.array_equal(explicit, got)


def test_mask_image_picks_inpaint_and_matches_the_api(capsys, tmp_path, pictures):
    image, mask = (Image.open(pictures / name).convert("RGB") for name in ("in.png", "mask.png"))
    got = cli_pixels(capsys, tmp_path, "--image", str(pictures / "in.png"), "--mask-image", str(pictures / "mask.png"),
                     "--strength", "0.9")
    assert np.array_equal(got, api_pixels(stable_diffusion.INPAINT_BLOCKS, image=image, mask_image=mask, strength=0.9))


def test_guidance_scale_and_size(capsys, tmp_path, plain):
    from diffblocks.guiders import ClassifierFreeGuidance

    got = cli_pixels(capsys, tmp_path, "--guidance-scale", "2.5", "--height", "40", "--width", "24")
    pipe = SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(
        str(embedded_model_path()))
    pipe.load_components()
    pipe.update_components(guider=ClassifierFreeGuidance(guidance_scale=2.5))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(prompt="a handwritten digit seven", num_inference_steps=STEPS, height=40, width=24,
                    generator=torch.Generator().manual_seed(3), output="images")[0]
    assert got.shape == (40, 24, 3) and np.array_equal(got, np.asarray(expected))


# guiders whose image differs from CFG's within STEPS steps (PAG, SEG and SLG perturb from 1% to 20% of the steps:
# none of 3; APG's defaults rescale nothing here, so it equals CFG)
GUIDER_CASES = {
    "tcfg": (["--guider", "tcfg"], lambda g: g.TangentialClassifierFreeGuidance()),
    "cfg-zero-star": (["--guider", "cfg-zero-star"], lambda g: g.ClassifierFreeZeroStarGuidance()),
    "mag-scale": (["--guider", "mag", "--guidance-scale", "3"], lambda g: g.MagnitudeAwareGuidance(guidance_scale=3.0)),
    "cfg-scale": (["--guider", "cfg", "--guidance-scale", "3"], lambda g: g.ClassifierFreeGuidance(guidance_scale=3.0)),
    "scale-only": (["--guidance-scale", "1.5"], lambda g: g.ClassifierFreeGuidance(guidance_scale=1.5)),
}


@pytest.mark.parametrize("case", GUIDER_CASES)
def test_guider_and_guidance_scale_are_the_api_with_that_guider(capsys, tmp_path, plain, case):
    from diffblocks import guiders

    argv, make = GUIDER_CASES[case]
    got = cli_pixels(capsys, tmp_path, *argv)
    assert np.array_equal(got, api_pixels(guider=make(guiders)))
    assert not np.array_equal(got, plain)  # the default is CFG at 7.5


def test_version_in_process(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith("diffblocks ")
