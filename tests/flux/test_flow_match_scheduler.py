"""FlowMatchEulerDiscreteScheduler against diffusers' step by step (to 1e-6), with a fixed shift and with
FLUX's resolution-dependent shift, and its place among diffblocks' schedulers."""

import numpy as np
import pytest
import torch

from diffblocks.components.errors import ConfigError
from diffblocks.components.schedulers import SCHEDULERS, FlowMatchEulerDiscreteScheduler
from diffblocks.components.schedulers.flow_match_euler import flux_mu

TOL = 1e-6
STEPS = 6
CONFIGS = {
    "fixed shift": (dict(shift=3.0), {}),
    "dynamic (FLUX.1-dev)": (dict(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15), dict(mu=0.8)),
    "dynamic, linear, terminal": (dict(use_dynamic_shifting=True, time_shift_type="linear", shift_terminal=0.1),
                                  dict(mu=0.8)),
    "inverted": (dict(shift=2.0, invert_sigmas=True), {}),
    "karras": (dict(shift=3.0, use_karras_sigmas=True), {}),
}


def pair(config):
    from diffusers import FlowMatchEulerDiscreteScheduler as Reference

    return Reference(**config), FlowMatchEulerDiscreteScheduler(**config)


def run_both(reference, ours, timesteps, generator_seed=None):
    x = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    for t in timesteps:
        v = torch.randn(x.shape, generator=torch.Generator().manual_seed(int(t)))
        kw_ref = {} if generator_seed is None else {"generator": torch.Generator().manual_seed(generator_seed)}
        kw_ours = {} if generator_seed is None else {"generator": torch.Generator().manual_seed(generator_seed)}
        x = reference.step(v, t, x, **kw_ref).prev_sample
        y = ours.step(v, t, y, **kw_ours).prev_sample
        assert (x - y).abs().max().item() <= TOL
    return x, y


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("custom_sigmas", [True, False])
def test_schedule_and_steps_match_diffusers(name, custom_sigmas):
    config, kwargs = CONFIGS[name]
    reference, ours = pair(config)
    if custom_sigmas:  # as FluxPipeline calls it
        kwargs = {**kwargs, "sigmas": np.linspace(1.0, 1 / STEPS, STEPS)}
    reference.set_timesteps(STEPS, **kwargs)
    ours.set_timesteps(STEPS, **kwargs)
    assert torch.allclose(ours.timesteps, reference.timesteps, atol=TOL, rtol=0)
    assert torch.allclose(ours.sigmas, reference.sigmas, atol=TOL, rtol=0)
    run_both(reference, ours, reference.timesteps)


def test_stochastic_sampling_and_custom_timesteps_match():
    reference, ours = pair(dict(shift=3.0, stochastic_sampling=True))
    for scheduler in (reference, ours):
        scheduler.set_timesteps(timesteps=[900.0, 600.0, 300.0, 50.0])
    run_both(reference, ours, reference.timesteps, generator_seed=3)


def test_scale_noise_from_the_begin_index_matches():
    reference, ours = pair(CONFIGS["dynamic (FLUX.1-dev)"][0])
    for scheduler in (reference, ours):
        scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.25, 4), mu=1.0)
        scheduler.set_begin_index(1)
    image, noise = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = reference.timesteps[1:2].repeat(2)
    assert torch.allclose(ours.scale_noise(image, t, noise), reference.scale_noise(image, t, noise), atol=TOL)
    assert torch.equal(ours.add_noise(image, noise, t), ours.scale_noise(image, t, noise))
    half = ours.scale_noise(image.bfloat16(), t, noise.bfloat16())  # sigmas follow the sample's dtype
    assert half.dtype == torch.bfloat16
    assert torch.equal(half, reference.scale_noise(image.bfloat16(), t, noise.bfloat16()))


def test_flux_mu_is_the_linear_shift_of_flux_pipeline():
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    for tokens in (64, 256, 1024, 4096, 6000):
        assert flux_mu(tokens) == pytest.approx(calculate_shift(tokens), abs=1e-12)
    assert flux_mu(256) == pytest.approx(0.5) and flux_mu(4096) == pytest.approx(1.15)


def test_dynamic_shifting_needs_mu_and_lengths_must_agree():
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ConfigError, match="needs mu when use_dynamic_shifting=True"):
        scheduler.set_timesteps(4)
    with pytest.raises(ConfigError, match="lengths differ: sigmas=3, num_inference_steps=4"):
        scheduler.set_timesteps(4, sigmas=[1.0, 0.5, 0.25], mu=0.5)
    with pytest.raises(ConfigError, match="time_shift_type"):
        FlowMatchEulerDiscreteScheduler(time_shift_type="cubic")
    scheduler.set_timesteps(sigmas=[1.0, 0.5, 0.25], mu=0.5)
    with pytest.raises(ConfigError, match="not the loop index 0"):
        scheduler.step(torch.zeros(1), 0, torch.zeros(1))


def test_is_a_registered_scheduler_with_per_call_copies_and_diffusers_configs(tmp_path):
    from diffusers import FlowMatchEulerDiscreteScheduler as Reference

    assert SCHEDULERS["FlowMatchEulerDiscreteScheduler"] is FlowMatchEulerDiscreteScheduler
    Reference(shift=3.0, use_dynamic_shifting=True).save_pretrained(tmp_path)
    scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path)
    assert scheduler.config.use_dynamic_shifting and scheduler.config.shift == 3.0
    call = scheduler.for_call()
    call.set_timesteps(sigmas=[1.0, 0.5], mu=0.7)
    call.step(torch.ones(1), call.timesteps[0], torch.zeros(1))
    assert call.step_index == 1 and scheduler.step_index is None and len(scheduler.timesteps) == 1000
    assert FlowMatchEulerDiscreteScheduler.from_config(scheduler.config).config == scheduler.config
