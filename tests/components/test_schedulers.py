"""Parity of diffblocks' schedulers with diffusers' classes of the same name (the numerical reference).

Every parity test runs both schedulers side by side on independent trajectories for 30 steps and checks,
at every step, ``max |ours - diffusers| <= ATOL`` for the scaled model input, ``prev_sample`` and the x0
estimate; schedules (timesteps, sigmas, init_noise_sigma) must be exactly equal. The "model" is a toy
ideal denoiser for a fixed clean sample plus seeded noise, so trajectories stay in a realistic range.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.schedulers import SCHEDULERS, SchedulerOutput  # noqa: E402
from diffblocks.modular_pipelines.errors import ConfigError  # noqa: E402
from scheduler_parity import (  # noqa: E402
    SD, SHAPE, STEPS, ZSNR, assert_close, assert_same_schedule, make_pair, run_parity, toy_model,
)


PREDICTIONS = {
    "EulerDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "EulerAncestralDiscreteScheduler": ("epsilon", "v_prediction"),
    "DDIMScheduler": ("epsilon", "v_prediction", "sample"),
    "DDPMScheduler": ("epsilon", "v_prediction", "sample"),
    "DPMSolverMultistepScheduler": ("epsilon", "v_prediction", "sample"),
    "LCMScheduler": ("epsilon", "v_prediction", "sample"),
    "UniPCMultistepScheduler": ("epsilon", "v_prediction", "sample"),
    "HeunDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "LMSDiscreteScheduler": ("epsilon", "v_prediction", "sample"),
    "KDPM2DiscreteScheduler": ("epsilon", "v_prediction"),
    "KDPM2AncestralDiscreteScheduler": ("epsilon", "v_prediction"),
}

# (scheduler, config, step kwargs, number of steps)
VARIANTS = [
    ("HeunDiscreteScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("HeunDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, STEPS),
    ("HeunDiscreteScheduler", {**SD, "use_exponential_sigmas": True, "clip_sample": True}, {}, STEPS),
    ("HeunDiscreteScheduler", {**SD, "timestep_spacing": "trailing", "prediction_type": "v_prediction"}, {}, 7),
    ("LMSDiscreteScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("KDPM2DiscreteScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("KDPM2DiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, STEPS),
    ("KDPM2DiscreteScheduler", {**SD, "use_exponential_sigmas": True, "prediction_type": "v_prediction"}, {}, STEPS),
    ("KDPM2DiscreteScheduler", {**SD, "timestep_spacing": "trailing"}, {}, 7),
    ("KDPM2AncestralDiscreteScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("KDPM2AncestralDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, STEPS),
    ("KDPM2AncestralDiscreteScheduler", {**SD, "timestep_spacing": "trailing", "prediction_type": "v_prediction"},
     {}, 7),
    ("LMSDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {"order": 2}, STEPS),
    ("EulerDiscreteScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("EulerDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, STEPS),
    ("EulerDiscreteScheduler", {**SD, **ZSNR}, {}, STEPS),
    ("EulerDiscreteScheduler", {**SD, "final_sigmas_type": "sigma_min", "use_exponential_sigmas": True}, {}, STEPS),
    ("EulerDiscreteScheduler", {**SD, "use_beta_sigmas": True}, {}, STEPS),
    ("EulerDiscreteScheduler", {"beta_schedule": "squaredcos_cap_v2", "interpolation_type": "log_linear"}, {}, STEPS),
    ("EulerDiscreteScheduler", {"prediction_type": "v_prediction", "timestep_type": "continuous"}, {}, STEPS),
    ("EulerDiscreteScheduler", {**SD, "sigma_min": 0.1, "sigma_max": 10.0, "use_karras_sigmas": True}, {}, STEPS),
    ("EulerDiscreteScheduler", SD, {"s_churn": 1.0, "s_tmin": 0.5, "s_tmax": 10.0}, STEPS),
    ("EulerDiscreteScheduler", SD, {"s_churn": 40.0, "s_tmin": 0.0, "s_tmax": 1e9}, STEPS),  # churn at its cap
    ("EulerDiscreteScheduler", SD, {"s_churn": 2.0, "s_noise": 0.7}, STEPS),  # default window, scaled noise
    ("EulerDiscreteScheduler", {**SD, "prediction_type": "v_prediction"}, {"s_churn": 1.0}, STEPS),  # v at sigma, not sigma_hat
    ("EulerDiscreteScheduler", {**SD, "prediction_type": "original_sample"}, {}, STEPS),  # diffusers' alias of "sample"
    ("EulerAncestralDiscreteScheduler", {**SD, **ZSNR}, {}, STEPS),
    ("EulerAncestralDiscreteScheduler", {**SD, "timestep_spacing": "leading", "steps_offset": 1}, {}, STEPS),
    ("DDIMScheduler", {**SD, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1}, {}, STEPS),
    ("DDIMScheduler", {**SD, **ZSNR, "clip_sample": False}, {}, STEPS),
    ("DDIMScheduler", {**SD, "timestep_spacing": "trailing", "clip_sample": False}, {"eta": 1.0}, STEPS),
    ("DDIMScheduler", {"timestep_spacing": "linspace", "thresholding": True}, {"eta": 0.5}, STEPS),
    ("DDIMScheduler", SD, {"eta": 0.3, "use_clipped_model_output": True}, STEPS),
    # a dynamic threshold above 1 (at 1 it equals clipping to [-1, 1], which clip_sample does by default)
    ("DDIMScheduler", {**SD, "thresholding": True, "sample_max_value": 2.0, "clip_sample": False}, {}, STEPS),
    ("DDPMScheduler", {**SD, "thresholding": True, "sample_max_value": 2.0}, {}, STEPS),
    ("DDPMScheduler", {**SD, **ZSNR}, {}, STEPS),
    ("DDPMScheduler", {"variance_type": "fixed_large", "timestep_spacing": "linspace"}, {}, STEPS),
    ("DDPMScheduler", {"variance_type": "fixed_small_log", "beta_schedule": "sigmoid"}, {}, STEPS),
    ("DDPMScheduler", {"thresholding": True, "beta_schedule": "squaredcos_cap_v2"}, {}, STEPS),
    ("DDPMScheduler", {"beta_schedule": "laplace"}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "dpmsolver", "final_sigmas_type": "sigma_min"}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "solver_order": 1}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "solver_order": 3, "solver_type": "heun"}, {}, STEPS),
    (
        "DPMSolverMultistepScheduler",
        {
            **SD,
            "algorithm_type": "dpmsolver",
            "solver_type": "heun",
            "final_sigmas_type": "sigma_min",
            "solver_order": 3,
        },
        {},
        STEPS,
    ),
    ("DPMSolverMultistepScheduler", {**SD, **ZSNR}, {}, STEPS),
    (
        "DPMSolverMultistepScheduler",
        {
            **SD,
            "timestep_spacing": "leading",
            "steps_offset": 1,
            "lower_order_final": False,
            "final_sigmas_type": "sigma_min",
        },
        {},
        10,
    ),
    ("DPMSolverMultistepScheduler", {**SD, "use_lu_lambdas": True, "euler_at_final": True}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "use_exponential_sigmas": True, "thresholding": True}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "sde-dpmsolver++", "solver_order": 3}, {}, STEPS),
    (
        "DPMSolverMultistepScheduler",
        {**SD, "algorithm_type": "sde-dpmsolver", "solver_type": "heun", "final_sigmas_type": "sigma_min"},
        {},
        STEPS,
    ),
    ("DPMSolverMultistepScheduler", {**SD, "lambda_min_clipped": -5.1}, {}, STEPS),
    # paths mutation testing found no parity case for: SDE second order with heun, epsilon from the other
    # prediction types for the non-++ solver, UniPC's flow schedule stretched to a terminal
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "sde-dpmsolver++", "solver_type": "heun"}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "dpmsolver", "thresholding": True,
                                     "final_sigmas_type": "sigma_min"}, {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "dpmsolver", "prediction_type": "v_prediction", "final_sigmas_type": "sigma_min"},
     {}, STEPS),
    ("DPMSolverMultistepScheduler", {**SD, "algorithm_type": "dpmsolver", "prediction_type": "sample", "final_sigmas_type": "sigma_min"},
     {}, STEPS),
    (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "flow_shift": 3.0, "shift_terminal": 0.1},
        {},
        STEPS,
    ),
    (
        "DPMSolverMultistepScheduler",
        {"use_flow_sigmas": True, "flow_shift": 3.0, "prediction_type": "flow_prediction"},
        {},
        STEPS,
    ),
    ("LCMScheduler", {}, {}, 4),
    ("LCMScheduler", {"timestep_scaling": 5.0, "clip_sample": True, "set_alpha_to_one": False}, {}, 8),
    ("LCMScheduler", {**SD, "rescale_betas_zero_snr": True, "prediction_type": "v_prediction"}, {}, 6),
    ("UniPCMultistepScheduler", {**SD, "use_karras_sigmas": True}, {}, STEPS),
    (
        "UniPCMultistepScheduler",
        {**SD, "solver_type": "bh1", "solver_order": 3, "final_sigmas_type": "sigma_min"},
        {},
        STEPS,
    ),
    (
        "UniPCMultistepScheduler",
        {**SD, "predict_x0": False, "disable_corrector": [0, 3], "final_sigmas_type": "sigma_min"},
        {},
        STEPS,
    ),
    ("UniPCMultistepScheduler", {**SD, **ZSNR, "final_sigmas_type": "sigma_min"}, {}, STEPS),
    (
        "UniPCMultistepScheduler",
        {
            **SD,
            "timestep_spacing": "leading",
            "steps_offset": 1,
            "lower_order_final": False,
            "final_sigmas_type": "sigma_min",
            "thresholding": True,
        },
        {},
        STEPS,
    ),
    ("UniPCMultistepScheduler", {**SD, "use_exponential_sigmas": True}, {}, STEPS),
    (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "flow_shift": 3.0, "prediction_type": "flow_prediction"},
        {},
        STEPS,
    ),
]

PREDICTION_CASES = [
    (name, {**SD, "prediction_type": p}, {}, 4 if name == "LCMScheduler" else STEPS)
    for name, preds in PREDICTIONS.items()
    for p in preds
]


def _case_id(case):
    name, config, step_kw, _ = case
    parts = [f"{k}={v}" for k, v in {**config, **step_kw}.items() if k not in ("beta_start", "beta_end")]
    return name.replace("Scheduler", "") + "[" + ",".join(parts) + "]"


@pytest.mark.parametrize("case", PREDICTION_CASES + VARIANTS, ids=_case_id)
def test_step_parity(case):
    name, config, step_kw, steps = case
    ours, theirs = make_pair(name, config)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert_same_schedule(ours, theirs)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * theirs.init_noise_sigma
    run_parity(ours, theirs, theirs.timesteps, sample, step_kw)


# the SD-style schedulers; flow matching (FLUX) takes other configs and is tested in tests/flux/
ALL = sorted(name for name in SCHEDULERS if name != "FlowMatchEulerDiscreteScheduler")


@pytest.mark.parametrize("name", ALL)
def test_add_noise_and_begin_index_mid_schedule(name):
    """img2img: set_begin_index(k), noise the clean latents to timesteps[k], then denoise from there."""
    config = {**SD, "timestep_spacing": "trailing"} if name != "LCMScheduler" else {}
    steps = 8 if name == "LCMScheduler" else STEPS
    ours, theirs = make_pair(name, config)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(11))
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(12))
    picks = theirs.timesteps[[1, 5]]
    assert_close(ours.add_noise(clean, noise, picks), theirs.add_noise(clean, noise, picks), "add_noise by lookup")
    begin = steps // 3
    ours.set_begin_index(begin)
    if hasattr(theirs, "set_begin_index"):
        theirs.set_begin_index(begin)
    assert ours.begin_index == begin
    start = theirs.timesteps[begin : begin + 1].repeat(SHAPE[0])
    noisy = theirs.add_noise(clean, noise, start)
    assert_close(ours.add_noise(clean, noise, start), noisy, "add_noise at begin index")
    run_parity(ours, theirs, theirs.timesteps[begin:], noisy)
    assert ours.step_index in (None, len(ours.timesteps))  # DDIM/DDPM look timesteps up and keep no index


CUSTOM = [
    ("EulerDiscreteScheduler", SD, {"timesteps": [999, 850, 700, 500, 320, 180, 90, 20]}),
    ("EulerDiscreteScheduler", SD, {"sigmas": [14.6, 9.0, 5.0, 2.5, 1.2, 0.5, 0.1, 0.0]}),
    ("DDPMScheduler", SD, {"timesteps": [999, 800, 600, 400, 200, 100, 30, 0]}),
    ("DPMSolverMultistepScheduler", SD, {"timesteps": [999, 850, 700, 500, 320, 180, 90, 20]}),
    ("LCMScheduler", {}, {"timesteps": [999, 759, 499, 259]}),
    (
        "UniPCMultistepScheduler",
        {"use_flow_sigmas": True, "prediction_type": "flow_prediction"},
        {"sigmas": np.array([1.0, 0.8, 0.6, 0.4, 0.25, 0.1])},
    ),    *[
        (
            "UniPCMultistepScheduler",
            {"use_flow_sigmas": True, "prediction_type": "flow_prediction", "use_dynamic_shifting": True,
             "time_shift_type": shift},
            {"num_inference_steps": 8, "mu": 0.8},
        )
        for shift in ("exponential", "linear")  # the resolution-dependent shift, both forms
    ],
]


@pytest.mark.parametrize("case", CUSTOM, ids=lambda c: c[0] + "-" + next(iter(c[2])))
def test_custom_timesteps_and_sigmas(case):
    name, config, kwargs = case
    ours, theirs = make_pair(name, config)
    ours.set_timesteps(**kwargs)
    theirs.set_timesteps(**kwargs)
    assert_same_schedule(ours, theirs)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * theirs.init_noise_sigma
    run_parity(ours, theirs, theirs.timesteps, sample)


def test_unsupported_custom_schedules_raise():
    with pytest.raises(ConfigError, match="num_inference_steps only"):
        SCHEDULERS["EulerAncestralDiscreteScheduler"]().set_timesteps(timesteps=[999, 500])
    with pytest.raises(ConfigError, match="use_karras_sigmas"):
        SCHEDULERS["EulerDiscreteScheduler"](use_karras_sigmas=True).set_timesteps(timesteps=[999, 500])
    with pytest.raises(ConfigError, match="use_flow_sigmas"):
        SCHEDULERS["UniPCMultistepScheduler"]().set_timesteps(sigmas=[1.0, 0.5])
    with pytest.raises(ConfigError, match="final_sigmas_type"):
        SCHEDULERS["DPMSolverMultistepScheduler"](algorithm_type="dpmsolver")
    with pytest.raises(ConfigError, match="beta_schedule"):
        SCHEDULERS["DDIMScheduler"](beta_schedule="cubic")
    with pytest.raises(ConfigError, match="not the loop index 3"):
        euler = SCHEDULERS["EulerDiscreteScheduler"]()
        euler.set_timesteps(4)
        euler.step(torch.zeros(SHAPE), 3, torch.zeros(SHAPE))


def _public(config):
    """Non-underscore config items, with tuples as lists (what a JSON round trip gives)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dict(config).items() if not k.startswith("_")}


SWITCHES = [
    (
        "EulerDiscreteScheduler",
        {**SD, "timestep_spacing": "leading", "steps_offset": 1, "use_karras_sigmas": True},
        "DPMSolverMultistepScheduler",
    ),
    (
        "DDIMScheduler",
        {**SD, "clip_sample": False, "set_alpha_to_one": False, "steps_offset": 1},
        "EulerAncestralDiscreteScheduler",
    ),
    ("EulerDiscreteScheduler", {}, "DDIMScheduler"),  # defaults are not carried over: DDIM keeps "leading"
    (
        "DPMSolverMultistepScheduler",
        {**SD, "algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True},
        "UniPCMultistepScheduler",
    ),
    ("UniPCMultistepScheduler", {**SD, "timestep_spacing": "trailing"}, "LCMScheduler"),
    ("LCMScheduler", {"prediction_type": "v_prediction"}, "DDPMScheduler"),
]


@pytest.mark.parametrize("case", SWITCHES, ids=lambda c: f"{c[0]}->{c[2]}")
def test_from_config_across_types(case):
    source, config, target = case
    src_ours, src_theirs = make_pair(source, config)
    ours = SCHEDULERS[target].from_config(src_ours.config)
    theirs = getattr(diffusers, target).from_config(src_theirs.config)
    assert type(ours).__name__ == target
    assert _public(ours.config) == _public(theirs.config)
    steps = 4 if target == "LCMScheduler" else STEPS
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert_same_schedule(ours, theirs)
    # and back again: keys the middle class did not take survive the round trip
    back_ours = SCHEDULERS[source].from_config(ours.config)
    back_theirs = getattr(diffusers, source).from_config(theirs.config)
    assert _public(back_ours.config) == _public(back_theirs.config)


def test_from_config_overrides_and_attribute_access():
    euler = SCHEDULERS["EulerDiscreteScheduler"].from_config(
        {**SD, "_class_name": "PNDMScheduler", "skip_prk_steps": True}, timestep_spacing="trailing"
    )
    assert euler.config.timestep_spacing == "trailing"
    assert euler.config.num_train_timesteps == 1000 and len(euler) == 1000
    assert euler.config["skip_prk_steps"] is True  # kept for the next switch, not passed to __init__
    with pytest.raises(TypeError, match="read-only"):
        euler.config["timestep_spacing"] = "linspace"
    with pytest.raises(AttributeError):
        _ = euler.config.no_such_key


@pytest.mark.parametrize("name", ALL)
def test_save_load_round_trip(tmp_path, name):
    config = {**SD, "timestep_spacing": "trailing", "steps_offset": 1}
    ours, theirs = make_pair(name, config)
    ours.save_pretrained(tmp_path / "ours")
    theirs.save_pretrained(tmp_path / "theirs")
    saved = json.loads((tmp_path / "ours" / "scheduler_config.json").read_text())
    assert saved["_class_name"] == name and "_use_default_values" not in saved
    for folder in ("ours", "theirs"):  # our file and diffusers' file load the same way in both libraries
        loaded = SCHEDULERS[name].from_pretrained(tmp_path / folder)
        reference = getattr(diffusers, name).from_pretrained(tmp_path / folder)
        assert _public(loaded.config) == _public(reference.config) == _public(ours.config)
    nested = tmp_path / "pipe" / "scheduler"
    ours.save_pretrained(nested)
    nested_loaded = SCHEDULERS[name].from_pretrained(tmp_path / "pipe", subfolder="scheduler")
    assert _public(nested_loaded.config) == _public(ours.config)


def test_step_output_forms():
    ours = SCHEDULERS["DPMSolverMultistepScheduler"](**SD)
    ours.set_timesteps(5)
    out = ours.step(torch.zeros(SHAPE), ours.timesteps[0], torch.ones(SHAPE))
    assert isinstance(out, SchedulerOutput) and out.pred_original_sample is not None
    prev, x0 = ours.step(torch.zeros(SHAPE), ours.timesteps[1], torch.ones(SHAPE), return_dict=False)
    assert prev.shape == x0.shape == SHAPE
    assert {name: cls.order for name, cls in SCHEDULERS.items() if cls.order != 1} == {
        "HeunDiscreteScheduler": 2, "KDPM2DiscreteScheduler": 2, "KDPM2AncestralDiscreteScheduler": 2}
    assert all(cls.order == getattr(diffusers, name).order for name, cls in SCHEDULERS.items())  # img2img reads it


SD15_FILE = {  # stable-diffusion-v1-5 scheduler/scheduler_config.json, as published
    "_class_name": "PNDMScheduler",
    "_diffusers_version": "0.6.0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}
SDXL_FILE = {  # stable-diffusion-xl-base-1.0 scheduler/scheduler_config.json, as published
    "_class_name": "EulerDiscreteScheduler",
    "_diffusers_version": "0.19.0.dev0",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "interpolation_type": "linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "sample_max_value": 1.0,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
    "use_karras_sigmas": False,
}


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("file", [SD15_FILE, SDXL_FILE], ids=["sd15", "sdxl"])
def test_published_configs_load_like_diffusers(tmp_path, name, file):
    (tmp_path / "scheduler").mkdir()
    (tmp_path / "scheduler" / "scheduler_config.json").write_text(json.dumps(file))
    ours = SCHEDULERS[name].from_pretrained(tmp_path, subfolder="scheduler")
    theirs = getattr(diffusers, name).from_pretrained(tmp_path, subfolder="scheduler")
    assert _public(ours.config) == _public(theirs.config)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert_same_schedule(ours, theirs)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * theirs.init_noise_sigma
    run_parity(ours, theirs, theirs.timesteps, sample)


@pytest.mark.parametrize("name", ["EulerAncestralDiscreteScheduler", "DDPMScheduler", "LCMScheduler"])
def test_generator_list_consumed_per_sample_like_diffusers(name):
    ours, theirs = make_pair(name, SD)
    ours.set_timesteps(6)
    theirs.set_timesteps(6)
    target = torch.zeros(SHAPE)
    x_ours = x_theirs = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * theirs.init_noise_sigma
    gens_ours = [torch.Generator().manual_seed(s) for s in (10, 20)]
    gens_theirs = [torch.Generator().manual_seed(s) for s in (10, 20)]
    for i, t in enumerate(theirs.timesteps):
        out = toy_model(theirs.scale_model_input(x_theirs, t), t, theirs, target, i)
        ours.scale_model_input(x_ours, t)
        x_theirs = theirs.step(out, t, x_theirs, generator=gens_theirs).prev_sample
        x_ours = ours.step(out, t, x_ours, generator=gens_ours).prev_sample
        assert_close(x_ours, x_theirs, f"prev_sample at step {i}")
    for a, b in zip(gens_ours, gens_theirs):
        assert torch.equal(a.get_state(), b.get_state())


def test_unipc_bh1_final_step_to_zero_stays_finite():
    """Documented deviation: diffusers' bh1 first-order step to sigma=0 gives NaN (B(h) = -inf times 0)."""
    ours = SCHEDULERS["UniPCMultistepScheduler"](**SD, solver_type="bh1")
    ours.set_timesteps(5)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(ours.timesteps):
        x = ours.step(toy_model(x, t, ours, torch.zeros(SHAPE), i), t, x).prev_sample
    assert torch.isfinite(x).all()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ALL)
def test_step_parity_on_cuda(name):
    """Timesteps on the GPU, sigmas kept on the host, CPU generator for the noise: as in a CUDA pipeline."""
    ours, theirs = make_pair(name, SD)
    steps = 4 if name == "LCMScheduler" else 10
    ours.set_timesteps(steps, device="cuda")
    theirs.set_timesteps(steps, device="cuda")
    assert ours.timesteps.device.type == "cuda"
    assert_same_schedule(ours, theirs)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)).cuda() * theirs.init_noise_sigma
    result = run_parity(ours, theirs, theirs.timesteps, sample)
    assert result.device.type == "cuda"


def test_ddim_refuses_a_step_count_that_runs_past_the_training_timesteps():
    from diffblocks.components.errors import ConfigError
    from diffblocks.components.schedulers import DDIMScheduler

    scheduler = DDIMScheduler(steps_offset=1, timestep_spacing="leading")
    scheduler.set_timesteps(999)
    assert int(scheduler.timesteps.max()) == 999
    with pytest.raises(ConfigError, match="1000 steps with steps_offset=1 .* reach timestep 1000"):
        scheduler.set_timesteps(1000)
