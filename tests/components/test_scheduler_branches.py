"""Scheduler branches that mutation testing found without a parity case: LCM's custom timesteps (strength,
refusals, the off-grid warning), learned variances (DDPM, and DPM-Solver on DeepFloyd-style outputs), the
multistep fallback for a timestep off the schedule, and Euler's step count on a custom schedule. Tolerance:
``ATOL`` per step, as in ``test_schedulers``."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("diffusers")

from diffblocks.components.schedulers import SCHEDULERS  # noqa: E402
from diffblocks.modular_pipelines.errors import ConfigError  # noqa: E402
from scheduler_parity import SD, SHAPE, STEPS, assert_close, assert_same_schedule, make_pair  # noqa: E402


@pytest.mark.parametrize("strength", [1.0, 0.5, 0.3])
def test_lcm_custom_timesteps_with_strength_follow_diffusers(strength):
    ours, theirs = make_pair("LCMScheduler", {})
    kwargs = {"timesteps": [999, 759, 499, 259], "strength": strength}
    ours.set_timesteps(**kwargs)
    theirs.set_timesteps(**kwargs)
    assert_same_schedule(ours, theirs)
    assert ours.num_inference_steps == theirs.num_inference_steps == 4 and ours.custom_timesteps is True


@pytest.mark.parametrize("timesteps, words", [
    ([999, 999, 499], "strictly descending, got [999, 999, 499]"),  # equal neighbours
    ([759, 999, 499], "strictly descending, got [759, 999, 499]"),  # the first pair
    ([1000, 759], "must start below 1000"),
])
def test_lcm_refuses_custom_timesteps_it_cannot_run(timesteps, words):
    with pytest.raises(ConfigError) as err:
        SCHEDULERS["LCMScheduler"]().set_timesteps(timesteps=timesteps)
    assert str(err.value).startswith("LCMScheduler: custom timesteps must") and words in str(err.value)


def test_lcm_warns_about_custom_timesteps_off_its_grid(caplog):
    lcm = SCHEDULERS["LCMScheduler"]()
    with caplog.at_level("WARNING"):
        lcm.set_timesteps(timesteps=[999, 759, 499, 259])  # on the 50-step distillation grid
    assert caplog.records == []
    with caplog.at_level("WARNING"):
        lcm.set_timesteps(timesteps=[998, 760, 499, 258])  # the first is not checked: a start may be off the grid
    assert [r.getMessage() for r in caplog.records] == [
        "LCMScheduler: timesteps [760, 258] are not on the distillation grid; results may degrade"]
    assert lcm.timesteps.dtype == torch.long


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
def test_ddpm_learned_variance_takes_it_from_the_second_half_of_the_output(variance_type):
    ours, theirs = make_pair("DDPMScheduler", {**SD, "variance_type": variance_type})
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    shape = (2, 3, 16, 16)  # IF-like: no other dimension equals twice the channels
    x_ours = x_theirs = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    gen_ours, gen_theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for i, t in enumerate(theirs.timesteps):
        output = torch.randn(shape[0], shape[1] * 2, *shape[2:], generator=torch.Generator().manual_seed(100 + i))
        half = output[:, shape[1]:]  # "learned": the variance itself; "learned_range": a fraction between bounds
        output[:, shape[1]:] = half.abs() * 0.01 if variance_type == "learned" else half.clamp(-1, 1)
        x_theirs = theirs.step(output, t, x_theirs, generator=gen_theirs).prev_sample
        x_ours = ours.step(output, t, x_ours, generator=gen_ours).prev_sample
        assert_close(x_ours, x_theirs, f"prev_sample at step {i}")


@pytest.mark.parametrize("variance_type", ["learned", "learned_range"])
def test_dpm_solver_keeps_the_noise_half_of_a_learned_variance_output(variance_type):
    ours, theirs = make_pair("DPMSolverMultistepScheduler", {**SD, "variance_type": variance_type})
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    x_ours = x_theirs = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(0))  # IF: 3 channels
    for i, t in enumerate(theirs.timesteps):
        output = torch.randn(1, 6, 8, 8, generator=torch.Generator().manual_seed(100 + i))
        x_theirs = theirs.step(output, t, x_theirs).prev_sample
        x_ours = ours.step(output, t, x_ours).prev_sample
        assert_close(x_ours, x_theirs, f"prev_sample at step {i}")


def test_a_multistep_solver_treats_a_timestep_off_its_schedule_as_the_last():
    ours, theirs = make_pair("DPMSolverMultistepScheduler", SD)
    ours.set_timesteps(STEPS)
    theirs.set_timesteps(STEPS)
    assert ours.index_for_timestep(torch.tensor(12345)) == theirs.index_for_timestep(torch.tensor(12345)) == STEPS - 1


@pytest.mark.parametrize("custom", [{"timesteps": [999, 700, 400, 100]}, {"sigmas": [14.6, 6.0, 2.0, 0.5, 0.0]}])
def test_euler_custom_schedules_count_their_steps_as_diffusers_does(custom):
    ours, theirs = make_pair("EulerDiscreteScheduler", SD)
    ours.set_timesteps(**custom)
    theirs.set_timesteps(**custom)
    assert_same_schedule(ours, theirs)
    assert ours.num_inference_steps == theirs.num_inference_steps == 4


def test_a_repeated_timestep_is_found_at_its_second_place_as_in_diffusers():
    ours, theirs = make_pair("DPMSolverMultistepScheduler", SD)
    ours.set_timesteps(4)
    theirs.set_timesteps(4)
    schedule = torch.tensor([999, 600, 600, 0])  # passed in, not the scheduler's own (which has no 600)
    found = [ours.index_for_timestep(torch.tensor(t), schedule) for t in (999, 600, 0)]
    assert found == [theirs.index_for_timestep(torch.tensor(t), schedule) for t in (999, 600, 0)] == [0, 2, 3]


def test_euler_started_mid_schedule_finds_its_place_from_the_timestep():
    ours, theirs = make_pair("EulerDiscreteScheduler", SD)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    t = theirs.timesteps[4]  # no begin index: the first step looks the timestep up
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    output = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    assert_close(ours.step(output, t, sample).prev_sample, theirs.step(output, t, sample).prev_sample, "prev_sample")
    assert ours.step_index == theirs.step_index == 5


@pytest.mark.parametrize("kwargs", [
    {"num_inference_steps": 4, "timesteps": [999, 500]},
    {"num_inference_steps": 4, "sigmas": [1.0, 0.5]},
    {},
])
def test_ddim_takes_a_step_count_and_nothing_else(kwargs):
    with pytest.raises(ConfigError, match=r"^DDIMScheduler\.set_timesteps takes num_inference_steps only$"):
        SCHEDULERS["DDIMScheduler"]().set_timesteps(**kwargs)


def test_ddim_refuses_more_steps_than_training_timesteps_naming_itself():
    with pytest.raises(ConfigError, match=r"^DDIMScheduler: num_inference_steps=2000 is more than the 1000 "):
        SCHEDULERS["DDIMScheduler"]().set_timesteps(2000)


def test_ddim_draws_noise_only_when_eta_is_positive_and_uses_the_noise_given():
    ours, theirs = make_pair("DDIMScheduler", SD)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    t = ours.timesteps[2]
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    output = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(3)
    before = generator.get_state()
    ours.step(output, t, sample, eta=0.0, generator=generator)
    assert torch.equal(generator.get_state(), before)  # eta 0 is deterministic: nothing drawn
    with pytest.raises(ConfigError, match="pass either generator or variance_noise, not both"):
        ours.step(output, t, sample, eta=0.5, generator=generator, variance_noise=noise)
    mine = ours.step(output, t, sample, eta=0.5, variance_noise=noise).prev_sample
    assert_close(mine, theirs.step(output, t, sample, eta=0.5, variance_noise=noise).prev_sample, "prev_sample")


@pytest.mark.parametrize("name", ["DDIMScheduler", "EulerDiscreteScheduler"])
def test_trained_betas_replace_the_schedule_as_in_diffusers(name):
    betas = torch.linspace(0.001, 0.03, 1000).tolist()
    ours, theirs = make_pair(name, {"trained_betas": betas})
    for attribute in ("betas", "alphas", "alphas_cumprod"):
        assert torch.equal(getattr(ours, attribute), getattr(theirs, attribute)), attribute
    assert not torch.equal(ours.alphas_cumprod, SCHEDULERS[name]().alphas_cumprod)


def test_trailing_spacing_with_a_step_per_training_timestep_ends_at_0_as_in_diffusers():
    ours, theirs = make_pair("DDIMScheduler", {**SD, "timestep_spacing": "trailing"})
    ours.set_timesteps(1000)
    theirs.set_timesteps(1000)
    assert_same_schedule(ours, theirs)
    assert len(ours.timesteps) == 1000 and int(ours.timesteps[-1]) == 0


def test_per_call_copies_of_a_multistep_solver_keep_their_own_history():
    shared = SCHEDULERS["DPMSolverMultistepScheduler"](**SD)
    first, second = shared.for_call(), shared.for_call()
    first.set_timesteps(10)
    second.set_timesteps(10)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    for t in first.timesteps[:3]:
        sample = first.step(torch.randn(SHAPE, generator=torch.Generator().manual_seed(int(t))), t, sample).prev_sample
    assert second.step_index is None and all(out is None for out in second.model_outputs)
    assert shared.num_inference_steps is None
    shared.set_timesteps(10)  # a copy of a scheduler already set up, stepped without setting it up again
    third = shared.for_call()
    third.step(torch.randn(SHAPE), third.timesteps[0], sample)
    assert shared.step_index is None and all(out is None for out in shared.model_outputs)


@pytest.mark.parametrize("name", ["DDPMScheduler", "DDIMScheduler"])
def test_get_velocity_is_the_v_prediction_target_as_in_diffusers(name):
    ours, theirs = make_pair(name, SD)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    timesteps = torch.tensor([999, 10])
    assert_close(ours.get_velocity(sample, noise, timesteps), theirs.get_velocity(sample, noise, timesteps), "v")


def test_set_shift_changes_the_later_schedules_as_in_diffusers():
    ours, theirs = make_pair("FlowMatchEulerDiscreteScheduler", {})
    ours.set_shift(3.0)
    theirs.set_shift(3.0)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert torch.equal(ours.timesteps, theirs.timesteps) and torch.equal(ours.sigmas, theirs.sigmas)
    unshifted = SCHEDULERS["FlowMatchEulerDiscreteScheduler"]()
    unshifted.set_timesteps(10)
    assert not torch.equal(ours.sigmas, unshifted.sigmas)


@pytest.mark.parametrize("update", ["karras", "vp"])
def test_the_update_functions_refuse_an_unknown_prediction_type_naming_it(update):
    from diffblocks.components.schedulers.updates import karras_denoised, vp_denoised

    x = torch.zeros(1)
    with pytest.raises(ConfigError, match=r": config 'prediction_type' expects one of epsilon, sample, v_prediction, "
                                          r"got 'nope'$") as err:
        karras_denoised("nope", x, x, x) if update == "karras" else vp_denoised("nope", x, x, x, "Mine")
    assert str(err.value).startswith("EulerDiscreteScheduler:" if update == "karras" else "Mine:")
