"""How a checkpoint file samples, read off the file: the v-prediction and zero-SNR markers trainers save, SD 2.x's
512 epsilon models told from its 768 v-prediction ones (with the shipped configs, which are 2.1's), EDM models
refused. Each run compares bitwise (tolerance 0) with the pipeline given that scheduler by hand."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from tiny_checkpoints import pipeline_with, write_checkpoint, write_sd2_checkpoint

from diffblocks import SequentialPipelineBlocks
from diffblocks.components import checkpoints
from diffblocks.components.checkpoints import SD2_V_PROBE, sampling_settings
from diffblocks.components.errors import ConfigError
from diffblocks.presets import stable_diffusion

MARKER = torch.zeros(0)  # what ComfyUI saves as "v_pred" and "ztsnr": the name is the message


def text2image(repo):
    return SequentialPipelineBlocks.from_blocks_dict(stable_diffusion.TEXT2IMAGE_BLOCKS).init_pipeline(repo)


@pytest.mark.parametrize("markers, rescaled", [(("v_pred",), False), (("v_pred", "ztsnr"), True)])
def test_a_v_prediction_marker_sets_the_scheduler_and_draws_what_it_would(sd_repo, sd_file, tmp_path, capsys,
                                                                           markers, rescaled):
    from test_cli import run_cli

    tuned, _ = sd_file
    file = write_checkpoint(tuned, tmp_path / "vpred.safetensors", extra={name: MARKER for name in markers})
    pipe = text2image(str(sd_repo))
    pipe.load_single_file(file)  # a repo given: the file's marker still tells
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.rescale_betas_zero_snr is rescaled
    assert pipe.scheduler.config.beta_end == 0.012  # the rest is the repo's

    code, _, err = run_cli(capsys, "run", "--prompt", "a cat", "--model", str(file), "--config", str(sd_repo),
                           "--steps", "3", "--device", "cpu", "--no-progress", "--out", str(tmp_path / "out.png"))
    assert code == 0, err
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)
    expected.update_components(scheduler=type(expected.scheduler).from_config(
        {**expected.scheduler.config, "prediction_type": "v_prediction", "rescale_betas_zero_snr": rescaled}))
    image = expected(prompt="a cat", num_inference_steps=3, output="images",
                     generator=torch.Generator().manual_seed(0))[0]
    assert np.array_equal(np.asarray(Image.open(tmp_path / "out.png").convert("RGB")), np.asarray(image))
    plain = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)(
        prompt="a cat", num_inference_steps=3, output="images", generator=torch.Generator().manual_seed(0))[0]
    assert not np.array_equal(np.asarray(plain), np.asarray(image))  # the marker changed the drawing


def test_a_file_without_markers_keeps_the_repos_scheduler(sd_repo, sd_file):
    _, file = sd_file
    pipe = text2image(str(sd_repo))
    pipe.load_single_file(file)
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert not pipe.scheduler.config.rescale_betas_zero_snr


@pytest.mark.parametrize("key, kind", [("edm_mean", "Playground v2.5"), ("edm_vpred.sigma_max", "CosXL")])
def test_an_edm_checkpoint_is_refused_before_loading(sd_repo, sd_file, tmp_path, key, kind):
    tuned, _ = sd_file
    file = write_checkpoint(tuned, tmp_path / "edm.safetensors", extra={key: torch.tensor([80.0])})
    pipe = text2image(str(sd_repo))
    with pytest.raises(ConfigError, match=f"EDM model \\({kind}"):
        pipe.load_single_file(file)
    assert pipe.unet is None and pipe.scheduler is None  # nothing loaded


@pytest.fixture(scope="module")
def sd2_repo(tmp_path_factory):
    """A tiny SD 2.x repo whose UNet has SD's 12 output blocks (so the block SD 2.x files are told by), with 2.1's
    v-prediction scheduler and a 768-pixel sample size: what the shipped ``sd2`` configs are, in small."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from tiny_models import make_sd_repo

    repo = make_sd_repo(tmp_path_factory.mktemp("sd2"))
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 32), layers_per_block=5, sample_size=24, in_channels=4, out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32, norm_num_groups=8, attention_head_dim=2, use_linear_projection=True)
    shutil.rmtree(repo / "unet")
    unet.save_pretrained(repo / "unet")
    scheduler = json.loads((repo / "scheduler" / "scheduler_config.json").read_text())
    (repo / "scheduler" / "scheduler_config.json").write_text(
        json.dumps({**scheduler, "prediction_type": "v_prediction"}))
    return repo, StableDiffusionPipeline.from_pretrained(repo, safety_checker=None)


@pytest.mark.parametrize("spread, prediction, size", [(0.2, "v_prediction", 24), (0.02, "epsilon", 64)])
def test_sd2_base_files_are_told_from_v_prediction_ones_with_the_shipped_configs(sd2_repo, tmp_path, monkeypatch,
                                                                                  spread, prediction, size):
    repo, tuned = sd2_repo
    probe = tuned.unet.up_blocks[1].attentions[5].transformer_blocks[0].norm1.bias
    with torch.no_grad():
        probe.copy_(torch.randn(probe.shape, generator=torch.Generator().manual_seed(1)) * spread)
    file = write_sd2_checkpoint(tuned, tmp_path / "sd2.safetensors")
    assert torch.equal(load_file(file)[SD2_V_PROBE], probe)  # the block the files are told by
    shipped = tmp_path / "family_configs"
    shutil.copytree(repo, shipped / "sd2", ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    monkeypatch.setattr(checkpoints, "FAMILY_CONFIGS", shipped)
    pipe = text2image(checkpoints.config_repo("sd2", None, file))
    pipe.load_single_file(file)
    assert (pipe.scheduler.config.prediction_type, pipe.unet.config.sample_size) == (prediction, size)
    assert torch.equal(pipe.unet.state_dict()["up_blocks.1.attentions.5.transformer_blocks.0.norm1.bias"], probe)

    given = text2image(str(repo))  # a config given is taken at its word
    given.load_single_file(file)
    assert (given.scheduler.config.prediction_type, given.unet.config.sample_size) == ("v_prediction", 24)


def test_sd2_inpainting_and_other_families_are_left_to_their_configs():
    bias = {SD2_V_PROBE: torch.full((8,), 0.01), checkpoints.CONV_IN: torch.zeros(32, 4, 3, 3)}
    assert sampling_settings(bias, "sd2", shipped=True) == {"scheduler": {"prediction_type": "epsilon"},
                                                            "unet": {"sample_size": 64}}
    assert sampling_settings(bias, "sd15", shipped=True) == {}
    assert sampling_settings(bias, "sd2", shipped=False) == {}
    inpainting = {**bias, checkpoints.CONV_IN: torch.zeros(32, 9, 3, 3)}
    assert sampling_settings(inpainting, "sd2", shipped=True) == {}  # SD 2.x's inpainting model predicts epsilon


def test_two_checkpoints_in_one_workflow_keep_their_own_schedulers(sd_repo, sd_file, tmp_path):
    """Both files read with the same configs, so through one ComponentsManager: the v-prediction file's scheduler
    is its own, and the other one's stays the repo's."""
    from node_workflows import link

    from diffblocks.components.manager import ComponentsManager
    from diffblocks.nodes import ArtifactStore, Executor

    tuned, plain = sd_file
    vpred = write_checkpoint(tuned, tmp_path / "vpred.safetensors", extra={"v_pred": MARKER})

    def run(file):
        return {"type": "preset:sd15-text2image", "inputs": {"components": link(file, "components"), "prompt": "a cat",
                                                             "seed": 0, "num_inference_steps": 3, "output_type": "pt"}}

    workflow = {"nodes": {
        "vpred": {"type": "LoadCheckpoint", "inputs": {"file": str(vpred), "config": str(sd_repo)}},
        "plain": {"type": "LoadCheckpoint", "inputs": {"file": str(plain), "config": str(sd_repo)}},
        "run_vpred": run("vpred"), "run_plain": run("plain")}}
    outputs = Executor(artifacts=ArtifactStore(tmp_path), components_manager=ComponentsManager()).run(workflow)
    expected = pipeline_with(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo, tuned)
    call = dict(prompt="a cat", num_inference_steps=3, output="images", output_type="pt")
    assert torch.equal(outputs["run_plain"]["images"], expected(generator=torch.Generator().manual_seed(0), **call))
    expected.update_components(scheduler=type(expected.scheduler).from_config(
        {**expected.scheduler.config, "prediction_type": "v_prediction"}))
    assert torch.equal(outputs["run_vpred"]["images"], expected(generator=torch.Generator().manual_seed(0), **call))
