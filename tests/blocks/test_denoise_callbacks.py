"""``callback_on_step_end`` through the Stable Diffusion and DDPM denoise loops (diffusers' signature)."""

import threading

import pytest
import torch
from tiny_models import build_pipeline

from diffblocks import SequentialPipelineBlocks
from diffblocks.blocks.stable_diffusion import StableDiffusionDecodeStep
from diffblocks.modular_pipelines.errors import InputValueError
from diffblocks.presets import stable_diffusion

STEPS = 3


@pytest.fixture(scope="module")
def sd_pipe(sd_repo):
    return build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)


def run(pipe, **kwargs):
    kwargs.setdefault("output_type", "pt")
    return pipe(prompt="a cat", generator=torch.Generator().manual_seed(0), num_inference_steps=STEPS, **kwargs)


def test_the_callback_sees_every_step_with_its_index_and_timestep(sd_pipe):
    seen = []

    def callback(pipe, step_index, timestep, callback_kwargs):
        assert pipe.unet is sd_pipe.unet and pipe.guider is not None  # the call's components
        seen.append((step_index, int(timestep), callback_kwargs["latents"].clone()))
        return callback_kwargs

    state = run(sd_pipe, callback_on_step_end=callback)
    assert [(i, t) for i, t, _ in seen] == list(enumerate(state.get("timesteps").tolist()))
    assert len(seen) == STEPS and torch.equal(seen[-1][2], run(sd_pipe, output_type="latent", output="images"))
    assert torch.equal(state.get("images"), run(sd_pipe, output="images"))  # returned unchanged: the same result


def test_zeroing_the_latents_at_the_last_step_decodes_zeros(sd_pipe):
    def zero_last(pipe, step_index, timestep, callback_kwargs):
        return {"latents": torch.zeros_like(callback_kwargs["latents"])} if step_index == STEPS - 1 else None

    latents = run(sd_pipe, callback_on_step_end=zero_last, output_type="latent", output="images")
    assert torch.equal(latents, torch.zeros_like(latents))  # a constant result
    images = run(sd_pipe, callback_on_step_end=zero_last, output="images")
    decode = StableDiffusionDecodeStep().init_pipeline()
    decode.update_components(vae=sd_pipe.vae, image_processor=sd_pipe.image_processor)
    by_hand = decode(latents=torch.zeros_like(latents), output_type="pt", output="images")
    assert torch.equal(images, by_hand)


def test_prompt_embeds_can_be_handed_to_the_callback(sd_pipe):
    seen = []
    run(sd_pipe, callback_on_step_end=lambda pipe, i, t, kwargs: seen.append(sorted(kwargs)),
        callback_on_step_end_tensor_inputs=["latents", "prompt_embeds", "noise_pred"])
    assert seen == [["latents", "noise_pred", "prompt_embeds"]] * STEPS


def test_an_unknown_tensor_input_names_the_loop_and_what_it_holds(sd_pipe):
    with pytest.raises(InputValueError) as err:
        run(sd_pipe, callback_on_step_end=lambda *args: None, callback_on_step_end_tensor_inputs=["latent"])
    message = str(err.value)
    assert "block 'denoise' (StableDiffusionDenoiseStep)" in message and "'latent' (did you mean latents?)" in message
    assert "prompt_embeds" in message and "noise_pred" in message


def test_setting_the_interrupt_event_from_the_callback_stops_the_loop(sd_pipe):
    stop = threading.Event()
    steps = []

    def callback(pipe, step_index, timestep, callback_kwargs):
        steps.append(step_index)
        stop.set()
        return callback_kwargs

    run(sd_pipe, callback_on_step_end=callback, interrupt_event=stop, output="images")
    assert steps == [0]


def test_the_ddpm_loop_hands_its_sample_to_the_callbacks_and_zeros_make_a_grey_image():
    from diffblocks.components.models import UNet2DModel
    from diffblocks.components.schedulers import DDPMScheduler
    from diffblocks.presets.ddpm import UNCONDITIONAL_BLOCKS

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1, block_out_channels=(8, 16),
                       norm_num_groups=8, down_block_types=("DownBlock2D",) * 2, up_block_types=("UpBlock2D",) * 2)
    pipe = SequentialPipelineBlocks.from_blocks_dict(UNCONDITIONAL_BLOCKS).init_pipeline()
    pipe.update_components(unet=unet, scheduler=DDPMScheduler(num_train_timesteps=20))
    pipe.set_progress_bar_config(disable=True)
    seen = []

    def zero_last(pipe, step_index, timestep, callback_kwargs):
        seen.append((step_index, sorted(callback_kwargs)))
        return {"sample": torch.zeros_like(callback_kwargs["sample"])} if step_index == STEPS - 1 else None

    images = pipe(num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0), output_type="pt",
                  output="images", callback_on_step_end=zero_last)
    assert seen == [(i, ["sample"]) for i in range(STEPS)]
    assert torch.equal(images, torch.full_like(images, 0.5))  # a sample of zeros is mid-grey
