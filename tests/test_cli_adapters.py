"""``diffblocks run --controlnet``, ``--ip-adapter`` and ``--lora`` (and ``batch --lora``) on the embedded model
with tiny adapters built in code: the same image as the Python API with the same adapter, a different one than
without it, and scale 0 gives the image without it."""

import numpy as np
import pytest
import torch
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from tiny_ip_adapter import make_ip_adapter_repo
from tiny_models import make_image

from diffblocks import SequentialPipelineBlocks
from diffblocks.blocks import stable_diffusion as sd_blocks
from diffblocks.cli.files import ip_adapter_source
from diffblocks.components import ControlNetModel, UNet2DConditionModel
from diffblocks.presets import embedded_model_path, stable_diffusion

STEPS = 3
PROMPT = "a handwritten digit four"


def make_controlnet(tmp_path_factory, seed: int) -> str:
    """A ControlNet made from the embedded UNet, its control encoder downsampling 4x like the embedded VAE."""
    unet = UNet2DConditionModel.from_pretrained(embedded_model_path(), subfolder="unet")
    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32))
    with torch.no_grad():
        for p in net.parameters():  # from_unet zero-initialises the output convolutions: make them matter
            p.add_(0.05 * torch.randn_like(p))
    path = tmp_path_factory.mktemp("controlnet")
    net.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def controlnet(tmp_path_factory) -> str:
    return make_controlnet(tmp_path_factory, 0)


@pytest.fixture(scope="module")
def second_controlnet(tmp_path_factory) -> str:
    return make_controlnet(tmp_path_factory, 1)


@pytest.fixture(scope="module")
def ip_adapter(tmp_path_factory):
    """A folder like h94/IP-Adapter's models/: image_encoder/ and three adapters fitting the embedded UNet."""
    return make_ip_adapter_repo(tmp_path_factory.mktemp("ip_adapter"), embedded_model_path())


@pytest.fixture(scope="module")
def pictures(tmp_path_factory):
    root = tmp_path_factory.mktemp("pictures")
    make_image(7, size=32).save(root / "control.png")
    make_image(8, size=32).save(root / "style.png")
    make_image(9, size=32).save(root / "in.png")
    return root


def load(path) -> Image.Image:
    return Image.open(path).convert("RGB")


def cli_pixels(capsys, tmp_path, *argv) -> np.ndarray:
    out = tmp_path / f"cli{len(list(tmp_path.iterdir()))}.png"
    code, _, err = run_cli(capsys, "run", "--prompt", PROMPT, "--steps", str(STEPS), "--no-progress",
                           "--device", "cpu", "--out", str(out), *argv)  # the API's device: bitwise equal
    assert code == 0, err
    return np.asarray(Image.open(out).convert("RGB"))


def api_pixels(blocks, setup=lambda pipe: None, prompt: str = PROMPT, **inputs) -> np.ndarray:
    pipe = SequentialPipelineBlocks.from_blocks_dict(blocks).init_pipeline(str(embedded_model_path()))
    pipe.load_components()
    setup(pipe)
    pipe.set_progress_bar_config(disable=True)
    image = pipe(prompt=prompt, num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                 output="images", **inputs)[0]
    return np.asarray(image)


def with_controlnet(path):
    return lambda pipe: pipe.update_components(controlnet=ControlNetModel.from_pretrained(path))


def test_controlnet_matches_the_api_controlnet_preset(capsys, tmp_path, controlnet, pictures):
    control = ["--controlnet", controlnet, "--control-image", str(pictures / "control.png")]
    got = cli_pixels(capsys, tmp_path, *control)
    expected = api_pixels(stable_diffusion.CONTROLNET_BLOCKS, with_controlnet(controlnet),
                          control_image=load(pictures / "control.png"))
    assert np.array_equal(got, expected)
    plain = cli_pixels(capsys, tmp_path)
    assert not np.array_equal(got, plain)
    assert np.array_equal(cli_pixels(capsys, tmp_path, *control, "--controlnet-scale", "0"), plain)
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--preset", "sd15-controlnet", *control), got)


def test_controlnet_with_image_is_controlnet_image2image(capsys, tmp_path, controlnet, pictures):
    got = cli_pixels(capsys, tmp_path, "--controlnet", controlnet, "--control-image", str(pictures / "control.png"),
                     "--image", str(pictures / "in.png"), "--strength", "0.8", "--controlnet-scale", "0.7")
    blocks = stable_diffusion.IMAGE2IMAGE_BLOCKS.copy()
    blocks.insert("controlnet_input", sd_blocks.StableDiffusionControlNetInputStep, list(blocks).index("denoise"))
    blocks["denoise"] = sd_blocks.StableDiffusionControlNetDenoiseStep
    expected = api_pixels(blocks, with_controlnet(controlnet), control_image=load(pictures / "control.png"),
                          image=load(pictures / "in.png"), strength=0.8, controlnet_conditioning_scale=0.7)
    assert np.array_equal(got, expected)


def test_a_broken_controlnet_names_the_flag(capsys, tmp_path, pictures):
    (tmp_path / "cn").mkdir()
    (tmp_path / "cn" / "config.json").write_text('{"_class_name": "ControlNetModel"}')
    code, _, err = run_cli(capsys, "run", "--prompt", "x", "--controlnet", str(tmp_path / "cn"), "--control-image",
                           str(pictures / "control.png"), "--out", str(tmp_path / "x.png"), "--no-progress")
    assert_one_line_error(code, err, f"--controlnet {tmp_path / 'cn'}: ")


def test_ip_adapter_matches_the_api_ip_adapter_preset(capsys, tmp_path, ip_adapter, pictures):
    adapter = ["--ip-adapter", str(ip_adapter / "ip-adapter.bin"), "--ip-adapter-image", str(pictures / "style.png")]
    got = cli_pixels(capsys, tmp_path, *adapter, "--ip-adapter-scale", "0.6")

    def load_adapter(pipe):
        pipe.loader.load_ip_adapter(str(ip_adapter), subfolder="", weight_name="ip-adapter.bin")
        pipe.loader.set_ip_adapter_scale(0.6)

    expected = api_pixels(stable_diffusion.IP_ADAPTER_BLOCKS, load_adapter, ip_adapter_image=load(pictures / "style.png"))
    assert np.array_equal(got, expected)
    plain = cli_pixels(capsys, tmp_path)
    assert not np.array_equal(got, plain)
    assert not np.array_equal(cli_pixels(capsys, tmp_path, *adapter), got)  # the default scale is 1.0
    assert np.array_equal(cli_pixels(capsys, tmp_path, *adapter, "--ip-adapter-scale", "0"), plain)


def test_ip_adapter_from_a_folder_with_one_weights_file(capsys, tmp_path, ip_adapter, pictures):
    import shutil

    folder = tmp_path / "one"
    shutil.copytree(ip_adapter / "image_encoder", folder / "image_encoder")
    shutil.copy(ip_adapter / "ip-adapter-plus.safetensors", folder)
    by_folder = cli_pixels(capsys, tmp_path, "--ip-adapter", str(folder), "--ip-adapter-image", str(pictures / "style.png"))
    by_file = cli_pixels(capsys, tmp_path, "--ip-adapter", str(ip_adapter / "ip-adapter-plus.safetensors"),
                         "--ip-adapter-image", str(pictures / "style.png"))
    assert np.array_equal(by_folder, by_file)


def test_ip_adapter_and_clip_vision_files_as_comfyui_keeps_them(capsys, tmp_path, ip_adapter, pictures, monkeypatch):
    """The adapter alone and the image encoder as one file (``--ip-adapter-encoder``), its config the shipped one of
    its size (here a folder holding the tiny encoder's stands in for them): the image of the adapter's own layout. An
    encoder of a size no config has is refused before anything loads, naming the flag."""
    import json
    import shutil

    import diffblocks.components.checkpoints as checkpoints

    shipped = tmp_path / "family_configs" / "clip-vision-tiny"
    shipped.mkdir(parents=True)
    shutil.copy(ip_adapter / "image_encoder" / "config.json", shipped)
    monkeypatch.setattr(checkpoints, "FAMILY_CONFIGS", shipped.parent)
    (tmp_path / "ipadapter").mkdir()
    shutil.copy(ip_adapter / "ip-adapter.bin", tmp_path / "ipadapter")
    style = ["--ip-adapter-image", str(pictures / "style.png")]
    by_files = cli_pixels(capsys, tmp_path, "--ip-adapter", str(tmp_path / "ipadapter" / "ip-adapter.bin"),
                          "--ip-adapter-encoder", str(ip_adapter / "image_encoder" / "model.safetensors"), *style)
    assert np.array_equal(by_files, cli_pixels(capsys, tmp_path, "--ip-adapter", str(ip_adapter / "ip-adapter.bin"),
                                               *style))
    config = json.loads((shipped / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    code, _, err = run_cli(capsys, "run", "--prompt", "x", "--ip-adapter", str(tmp_path / "ipadapter" / "ip-adapter.bin"),
                           "--ip-adapter-encoder", str(ip_adapter / "image_encoder" / "model.safetensors"), *style,
                           "--out", str(tmp_path / "x.png"), "--no-progress")
    assert_one_line_error(code, err, "--ip-adapter-encoder", "no shipped config has its size")


def test_ip_adapter_and_controlnet_together(capsys, tmp_path, ip_adapter, controlnet, pictures):
    """The flags compose both into text-to-image; the auto preset, which has both steps, draws the same."""
    flags = ["--ip-adapter", str(ip_adapter / "ip-adapter.bin"), "--ip-adapter-image", str(pictures / "style.png"),
             "--controlnet", controlnet, "--control-image", str(pictures / "control.png")]
    both = cli_pixels(capsys, tmp_path, *flags)
    only_control = cli_pixels(capsys, tmp_path, "--controlnet", controlnet, "--control-image",
                              str(pictures / "control.png"))
    assert both.shape == (32, 32, 3) and not np.array_equal(both, only_control)
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--preset", "sd15-auto", *flags), both)


def test_hires_with_a_controlnet_and_an_ip_adapter_keeps_both_on_the_second_pass(
        capsys, tmp_path, ip_adapter, controlnet, pictures):
    """``--hires`` with adapters paints the enlarged image again with them, as A1111 does: the auto preset's
    image-to-image with the same ControlNet and IP-Adapter, as the presets called from Python, bitwise."""
    flags = ["--ip-adapter", str(ip_adapter / "ip-adapter.bin"), "--ip-adapter-image", str(pictures / "style.png"),
             "--controlnet", controlnet, "--control-image", str(pictures / "control.png")]
    got = cli_pixels(capsys, tmp_path, *flags, "--hires", "1.5", "--hires-strength", "0.6")

    def setup(pipe):
        with_controlnet(controlnet)(pipe)
        pipe.loader.load_ip_adapter(str(ip_adapter), subfolder="", weight_name="ip-adapter.bin")

    adapters = dict(control_image=load(pictures / "control.png"), ip_adapter_image=load(pictures / "style.png"))
    first = Image.fromarray(api_pixels(stable_diffusion.AUTO_BLOCKS, setup, **adapters))
    second = api_pixels(stable_diffusion.AUTO_BLOCKS, setup, image=first.resize((48, 48), Image.Resampling.LANCZOS),
                        strength=0.6, height=48, width=48, **adapters)
    assert got.shape == (48, 48, 3) and np.array_equal(got, second)
    plain_second = api_pixels(stable_diffusion.IMAGE2IMAGE_BLOCKS, image=first.resize((48, 48), Image.Resampling.LANCZOS),
                              strength=0.6, height=48, width=48)
    assert not np.array_equal(second, plain_second)


def test_an_adapter_that_does_not_fit_names_the_flag(capsys, tmp_path, ip_adapter, pictures):
    import shutil

    folder = tmp_path / "bad"
    shutil.copytree(ip_adapter / "image_encoder", folder / "image_encoder")
    torch.save({"something": {"else": torch.zeros(1)}}, folder / "bad.bin")
    code, _, err = run_cli(capsys, "run", "--prompt", "x", "--ip-adapter", str(folder / "bad.bin"), "--ip-adapter-image",
                           str(pictures / "style.png"), "--out", str(tmp_path / "x.png"), "--no-progress")
    assert_one_line_error(code, err, f"--ip-adapter {folder / 'bad.bin'}: ")


@pytest.mark.parametrize("value, expected", [
    ("h94/IP-Adapter/models/ip-adapter_sd15.bin", ("h94/IP-Adapter", "models", "ip-adapter_sd15.bin")),
    ("h94/IP-Adapter/sdxl_models/a/b.safetensors", ("h94/IP-Adapter", "sdxl_models/a", "b.safetensors")),
    ("me/adapter/ip.bin", ("me/adapter", "", "ip.bin")),
])
def test_ip_adapter_hub_paths(value, expected):
    assert ip_adapter_source(value) == expected


def test_ip_adapter_preset_with_the_flag(capsys, tmp_path, ip_adapter, pictures):
    adapter = ["--ip-adapter", str(ip_adapter / "ip-adapter.bin"), "--ip-adapter-image", str(pictures / "style.png")]
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--preset", "sd15-ip-adapter", *adapter),
                          cli_pixels(capsys, tmp_path, *adapter))


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    """Two kohya LoRAs on the embedded UNet's cross-attention, as files."""
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(embedded_model_path(), subfolder="unet")
    folder = tmp_path_factory.mktemp("loras")
    for seed, name in ((1, "ink.safetensors"), (2, "chalk.safetensors")):
        g, lora = torch.Generator().manual_seed(seed), {}
        for module_name, module in unet.named_modules():
            if module_name.endswith(("attn2.to_k", "attn2.to_v")):
                key = "lora_unet_" + module_name.replace(".", "_")
                lora[f"{key}.lora_down.weight"] = torch.randn(4, module.in_features, generator=g) * 0.2
                lora[f"{key}.lora_up.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.2
        save_file(lora, folder / name)
    return folder


def with_loras(*pairs):
    def setup(pipe):
        names = [pipe.loader.load_lora_weights(str(path)) for path, _ in pairs]
        pipe.loader.set_adapters(names, [weight for _, weight in pairs])
    return setup


def test_lora_matches_the_api_at_its_weight_and_stacks(capsys, tmp_path, loras):
    ink, chalk = loras / "ink.safetensors", loras / "chalk.safetensors"
    got = cli_pixels(capsys, tmp_path, "--lora", f"{ink}:0.7")
    assert np.array_equal(got, api_pixels(stable_diffusion.TEXT2IMAGE_BLOCKS, with_loras((ink, 0.7))))
    plain = cli_pixels(capsys, tmp_path)
    assert not np.array_equal(got, plain)
    assert np.array_equal(cli_pixels(capsys, tmp_path, "--lora", f"{ink}:0"), plain)
    both = cli_pixels(capsys, tmp_path, "--lora", str(ink), "--lora", f"{chalk}:-0.5")
    assert np.array_equal(both, api_pixels(stable_diffusion.TEXT2IMAGE_BLOCKS, with_loras((ink, 1.0), (chalk, -0.5))))


def test_the_image_names_its_loras_as_a1111_does_and_they_read_back(capsys, tmp_path, loras):
    """A ``<lora:NAME:WEIGHT>`` tag each after the prompt and their short hashes (A1111's: the first 12 hex
    digits of the sha256 of a safetensors file's data, without its header), quoted as A1111 quotes a value with
    commas; --from-image takes the tags out of the prompt again and names them, and with the files draws the
    image again."""
    import hashlib

    from diffblocks.cli.infotext import parse

    ink, chalk = loras / "ink.safetensors", loras / "chalk.safetensors"

    def short(path):
        data = path.read_bytes()
        return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little"):]).hexdigest()[:12]

    out = tmp_path / "tagged.png"
    code, _, err = run_cli(capsys, "run", "--prompt", PROMPT, "--steps", str(STEPS), "--device", "cpu", "--no-progress",
                           "--lora", f"{ink}:0.7", "--lora", str(chalk), "--out", str(out))
    assert code == 0, err
    text = load(out).info["parameters"]
    assert text.startswith(f"{PROMPT} <lora:ink:0.7> <lora:chalk:1>\n")
    assert f'Lora hashes: "ink: {short(ink)}, chalk: {short(chalk)}"' in text
    assert parse(text)[2]["Lora hashes"] == f"ink: {short(ink)}, chalk: {short(chalk)}"  # A1111's reading
    code, _, err = run_cli(capsys, "run", "--from-image", str(out), "--device", "cpu", "--no-progress",
                           "--lora", f"{ink}:0.7", "--lora", str(chalk), "--out", str(tmp_path / "again.png"))
    assert code == 0 and "names <lora:ink:0.7>, <lora:chalk:1>, taken out of it" in err, err
    again = load(tmp_path / "again.png")
    assert again.tobytes() == load(out).tobytes() and again.info["parameters"] == text


def test_batch_takes_the_lora_too(capsys, tmp_path, loras):
    (tmp_path / "prompts.txt").write_text(PROMPT + "\n")
    code, _, err = run_cli(capsys, "batch", str(tmp_path / "prompts.txt"), "--out-dir", str(tmp_path / "out"), "--steps",
                           str(STEPS), "--device", "cpu", "--no-progress", "--lora", f"{loras / 'ink.safetensors'}:0.7")
    assert code == 0, err
    expected = api_pixels(stable_diffusion.TEXT2IMAGE_BLOCKS, with_loras((loras / "ink.safetensors", 0.7)))
    assert np.array_equal(np.asarray(load(tmp_path / "out" / "000000.png")), expected)


@pytest.mark.parametrize("value, problem", [
    ("missing.safetensors", "missing.safetensors: not found; give a LoRA file"),
    ("{loras}/ink.safetensors:inf", "--lora must be SOURCE[:WEIGHT] with a finite weight, got"),
    ("{bad}", "--lora {bad}: LoRA"),
])
def test_a_lora_that_is_missing_or_does_not_fit_names_the_flag(capsys, tmp_path, loras, value, problem):
    from safetensors.torch import save_file

    save_file({"lora_unet_nowhere.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_nowhere.lora_up.weight": torch.zeros(8, 4)}, tmp_path / "bad.safetensors")
    fill = dict(loras=loras, bad=tmp_path / "bad.safetensors")
    code, _, err = run_cli(capsys, "run", "--prompt", "x", "--lora", value.format(**fill), "--out",
                           str(tmp_path / "x.png"), "--no-progress")
    assert_one_line_error(code, err, problem.format(**fill))
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("value, expected", [
    ("me/style", [("me/style", None, 1.0)]),
    ("me/style/ink.safetensors:0.8", [("me/style", "ink.safetensors", 0.8)]),
    ("me/style/loras/ink.bin", [("me/style", "loras/ink.bin", 1.0)]),
])
def test_lora_hub_sources(value, expected):
    from diffblocks.cli.files import lora_sources

    assert lora_sources([value]) == expected


def test_batch_runs_a_controlnet_with_the_flags_or_each_lines_control_image(capsys, tmp_path, controlnet, pictures):
    import json

    def batch(prompts, *argv):
        out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
        code, _, err = run_cli(capsys, "batch", str(prompts), "--out-dir", str(out), "--steps", str(STEPS), "--device",
                               "cpu", "--no-progress", "--controlnet", controlnet, *argv)
        return code, err, out

    (tmp_path / "lines.jsonl").write_text(json.dumps({"prompt": PROMPT, "control_image": "pictures/control.png",
                                                      "controlnet_conditioning_scale": 0.5}) + "\n")
    (tmp_path / "pictures").symlink_to(pictures)  # a line's image is relative to the prompts file
    code, err, out = batch(tmp_path / "lines.jsonl")
    assert code == 0, err
    expected = api_pixels(stable_diffusion.CONTROLNET_BLOCKS, with_controlnet(controlnet),
                          control_image=load(pictures / "control.png"), controlnet_conditioning_scale=0.5)
    assert np.array_equal(np.asarray(load(out / "000000.png")), expected)

    (tmp_path / "prompts.txt").write_text(PROMPT + "\n")
    code, err, out = batch(tmp_path / "prompts.txt", "--control-image", str(pictures / "style.png"))
    assert code == 0, err
    expected = api_pixels(stable_diffusion.CONTROLNET_BLOCKS, with_controlnet(controlnet),
                          control_image=load(pictures / "style.png"))
    assert np.array_equal(np.asarray(load(out / "000000.png")), expected)

    code, err, out = batch(tmp_path / "prompts.txt")
    assert_one_line_error(code, err, '--controlnet needs --control-image, or "control_image" on every line')
    assert not out.exists()
    code, err, out = batch(tmp_path / "prompts.txt", "--controlnet", controlnet)
    assert_one_line_error(code, err, "--controlnet must be given once here (several ControlNets together: "
                                     "diffblocks run)")


def test_two_controlnets_together_match_the_api(capsys, tmp_path, controlnet, second_controlnet, pictures):
    from diffblocks.components import MultiControlNetModel

    argv = ["--controlnet", controlnet, "--control-image", str(pictures / "control.png"), "--controlnet-scale", "0.5",
            "--controlnet", second_controlnet, "--control-image", str(pictures / "style.png"), "--controlnet-scale",
            "0.8"]
    got = cli_pixels(capsys, tmp_path, *argv)
    both = MultiControlNetModel([ControlNetModel.from_pretrained(p) for p in (controlnet, second_controlnet)])
    expected = api_pixels(stable_diffusion.CONTROLNET_BLOCKS, lambda pipe: pipe.update_components(controlnet=both),
                          control_image=[load(pictures / "control.png"), load(pictures / "style.png")],
                          controlnet_conditioning_scale=[0.5, 0.8])
    assert np.array_equal(got, expected)
    first_only = cli_pixels(capsys, tmp_path, *argv[:6])
    assert not np.array_equal(got, first_only)


@pytest.mark.parametrize("argv, message", [
    (["--controlnet", "{a}", "--controlnet", "{b}", "--control-image", "{p}"],
     "--control-image must be given once per --controlnet (2)"),
    (["--controlnet", "{a}", "--control-image", "{p}", "--control-image", "{p}"],
     "--control-image must be given once per --controlnet (1)"),
    (["--controlnet", "{a}", "--controlnet", "{b}", "--control-image", "{p}", "--control-image", "{p}",
      "--controlnet-scale", "1", "--controlnet-scale", "1", "--controlnet-scale", "1"],
     "--controlnet-scale must be given once, or once per --controlnet (2), got [1.0, 1.0, 1.0]"),
])
def test_controlnet_counts_that_do_not_match_are_one_line(capsys, controlnet, second_controlnet, pictures, argv,
                                                           message):
    argv = [a.format(a=controlnet, b=second_controlnet, p=pictures / "control.png") for a in argv]
    code, _, err = run_cli(capsys, "run", "--prompt", "x", *argv)
    assert_one_line_error(code, err, message)


def test_an_embedding_file_is_used_by_its_name_or_the_token_given(capsys, tmp_path):
    import json

    from safetensors.torch import save_file

    hidden = json.loads((embedded_model_path() / "text_encoder" / "config.json").read_text())["hidden_size"]
    file = tmp_path / "inkstyle.safetensors"
    save_file({"emb_params": torch.randn(2, hidden, generator=torch.Generator().manual_seed(3))}, str(file))

    def cli(prompt, *argv):
        out = tmp_path / f"cli{len(list(tmp_path.glob('cli*')))}.png"
        code, _, err = run_cli(capsys, "run", "--prompt", prompt, "--steps", str(STEPS), "--no-progress", "--device",
                               "cpu", "--out", str(out), *argv)
        assert code == 0, err
        return np.asarray(Image.open(out).convert("RGB"))

    def api(prompt, token):
        return api_pixels(stable_diffusion.TEXT2IMAGE_BLOCKS, lambda pipe: pipe.loader.load_textual_inversion(
            str(file), token=token), prompt=prompt)

    by_name = cli(f"{PROMPT}, inkstyle", "--embedding", str(file))
    assert np.array_equal(by_name, api(f"{PROMPT}, inkstyle", "inkstyle"))
    assert not np.array_equal(by_name, cli(f"{PROMPT}, inkstyle"))  # without it the word is only letters
    assert np.array_equal(cli(f"{PROMPT}, <ink>", "--embedding", f"{file}:<ink>"), api(f"{PROMPT}, <ink>", "<ink>"))
    code, _, err = run_cli(capsys, "run", "--prompt", "x", "--embedding", str(tmp_path / "none.pt"))
    assert_one_line_error(code, err, "--embedding", "not found")
