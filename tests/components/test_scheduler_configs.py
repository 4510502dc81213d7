"""Scheduler config branches and argument checks that mutation testing found no test for.

Parity cases (``CONFIG_CASES``, ``SCHEDULE_CASES``) run ours and diffusers' scheduler of the same name side
by side, schedules exactly equal and every step within ``ATOL`` (1e-6), as in ``test_schedulers``: the
SDE DPM-Solver's midpoint form, DPM-Solver's and UniPC's solver-type aliases, ``lambda_min_clipped`` that
really clips, lower-order final steps around the 15-step threshold, flow sigmas combined with Karras /
exponential sigmas and ``sigma_min`` final sigmas, LCM's boundary condition at small timesteps and its
distillation grid. Where diffusers returns no x0 estimate, its property is checked instead: a model that
predicts the clean sample exactly gets that sample back as ``pred_original_sample``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from diffblocks.components.schedulers import SCHEDULERS  # noqa: E402
from diffblocks.modular_pipelines.errors import ConfigError  # noqa: E402
from scheduler_parity import SD, SHAPE, STEPS, assert_close, assert_same_schedule, make_pair, run_parity  # noqa: E402

DPM, UNIPC, LCM, DDPM = ("DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler", "DDPMScheduler")
FLOW = {"use_flow_sigmas": True, "prediction_type": "flow_prediction"}
SIGMA_MIN = {"final_sigmas_type": "sigma_min"}

# (scheduler, config, set_timesteps kwargs, step kwargs)
CONFIG_CASES = [
    (DPM, {**SD, "algorithm_type": "sde-dpmsolver", **SIGMA_MIN}, {"num_inference_steps": STEPS}, {}),  # midpoint
    (DPM, {**SD, "algorithm_type": "deis", "solver_type": "logrho", **SIGMA_MIN}, {"num_inference_steps": 10}, {}),
    (DPM, {**SD, "solver_type": "bh1"}, {"num_inference_steps": 10}, {}),
    (DPM, {**SD, "solver_type": "bh2"}, {"num_inference_steps": 10}, {}),
    (DPM, {**SD, "lambda_min_clipped": -2.5}, {"num_inference_steps": 10}, {}),  # clips the last 31 timesteps
    (DPM, {**SD, "lambda_min_clipped": -2.5, "timestep_spacing": "leading"}, {"num_inference_steps": 10}, {}),
    (DPM, {"beta_schedule": "squaredcos_cap_v2", "use_lu_lambdas": True}, {"num_inference_steps": 10}, {}),
    (DPM, {**SD, "euler_at_final": True, **SIGMA_MIN}, {"num_inference_steps": STEPS}, {}),
    (DPM, {**SD, "solver_order": 3, **SIGMA_MIN}, {"num_inference_steps": 10}, {}),  # lower order at the end
    (DPM, {**SD, "solver_order": 3, **SIGMA_MIN}, {"num_inference_steps": 15}, {}),  # 15 steps: not lowered
    (DPM, {**FLOW, "use_dynamic_shifting": True}, {"num_inference_steps": 10, "mu": 0.8}, {}),
    (UNIPC, {**SD, "use_karras_sigmas": True, **SIGMA_MIN}, {"num_inference_steps": STEPS}, {}),
    (UNIPC, {**FLOW, "use_karras_sigmas": True}, {"num_inference_steps": STEPS}, {}),
    (UNIPC, {**FLOW, "flow_shift": 3.0, **SIGMA_MIN}, {"num_inference_steps": STEPS}, {}),
    (UNIPC, {**FLOW, "use_karras_sigmas": True}, {"sigmas": np.array([0.9, 0.7, 0.5, 0.3, 0.15, 0.05])}, {}),
    (UNIPC, FLOW, {"sigmas": np.array([0.9, 0.7, 0.5, 0.3, 0.15, 0.05])}, {}),  # img2img: not starting at 1
    (UNIPC, {**SD, "predict_x0": False, "prediction_type": "sample", **SIGMA_MIN}, {"num_inference_steps": STEPS}, {}),
    (UNIPC, {**SD, "predict_x0": False, "prediction_type": "v_prediction", **SIGMA_MIN},
     {"num_inference_steps": STEPS}, {}),
    (LCM, {}, {"timesteps": [999, 759, 499, 259, 0]}, {}),  # c_skip = 1 at t = 0; re-noised to t = 0 before it
    (LCM, {"timestep_scaling": 0.1}, {"num_inference_steps": 4}, {}),  # boundary scalings far from (0, 1)
    (LCM, {"original_inference_steps": 30}, {"num_inference_steps": 4}, {}),  # 1000 // 30: not a divisor
    (LCM, {}, {"num_inference_steps": 4, "strength": 0.5}, {}),
    (LCM, {}, {"num_inference_steps": 30}, {}),  # more than half the distillation grid
    (LCM, {}, {"num_inference_steps": 50}, {}),  # all of it
    (DDPM, SD, {"timesteps": [999, 600, 200, 3, 2, 1, 0]}, {}),  # the posterior noise at t = 1
]


def _case_id(case):
    name, config, kwargs, _ = case
    parts = [f"{k}={v}" for k, v in {**config, **kwargs}.items() if k not in ("beta_start", "beta_end")]
    return name.replace("Scheduler", "") + "[" + ",".join(parts) + "]"


@pytest.mark.parametrize("case", CONFIG_CASES, ids=_case_id)
def test_config_branch_parity(case):
    name, config, kwargs, step_kw = case
    ours, theirs = make_pair(name, config)
    ours.set_timesteps(**kwargs)
    theirs.set_timesteps(**kwargs)
    assert_same_schedule(ours, theirs)
    assert ours.num_inference_steps == theirs.num_inference_steps
    assert ours.config.get("algorithm_type") == theirs.config.get("algorithm_type")
    assert ours.config.get("solver_type") == theirs.config.get("solver_type")
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3)) * theirs.init_noise_sigma
    run_parity(ours, theirs, theirs.timesteps, sample, step_kw)


# schedules only: stepping them diverges in the reference too (cosine betas with Karras sigmas repeat the
# first timestep; exponential sigmas are VE sigmas far above 1, not flow sigmas)
SCHEDULE_CASES = [
    (DPM, {"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True}),  # fractional timesteps kept
    (UNIPC, {**FLOW, "use_exponential_sigmas": True}),  # exponential wins over the flow schedule
]


@pytest.mark.parametrize("name, config", SCHEDULE_CASES, ids=lambda c: str(c))
def test_config_branch_schedule_parity(name, config):
    ours, theirs = make_pair(name, config)
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert_same_schedule(ours, theirs)


def test_euler_karras_sigmas_beyond_the_training_range_map_to_its_end_timesteps():
    """sigma_to_t clamps to [0, T-1] when sigma_min / sigma_max lie outside the training sigmas."""
    ours, theirs = make_pair("EulerDiscreteScheduler", {**SD, "sigma_min": 0.01, "sigma_max": 20.0,
                                                         "use_karras_sigmas": True})
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    assert_same_schedule(ours, theirs)
    assert float(ours.timesteps[0]) == 999.0 and float(ours.timesteps[-1]) == 0.0


def test_dpm_solver_sde_takes_the_given_variance_noise():
    ours, theirs = make_pair(DPM, {**SD, "algorithm_type": "sde-dpmsolver++"})
    ours.set_timesteps(5)
    theirs.set_timesteps(5)
    x_ours = x_theirs = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(theirs.timesteps):
        out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(50 + i))
        noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(80 + i))
        # the generators differ: only the explicit noise can make the two agree
        x_theirs = theirs.step(out, t, x_theirs, generator=torch.Generator().manual_seed(1),
                               variance_noise=noise).prev_sample
        x_ours = ours.step(out, t, x_ours, generator=torch.Generator().manual_seed(2),
                           variance_noise=noise).prev_sample
        assert_close(x_ours, x_theirs, f"prev_sample at step {i}")


def test_unipc_with_a_solver_p_predicts_with_it():
    """UniPC's ``solver_p``: the corrector is UniPC's, the prediction the given scheduler's (order 3 keeps
    three timesteps in the history, so the one handed on must be the newest)."""
    ours = SCHEDULERS[UNIPC](**SD, solver_order=3, solver_p=SCHEDULERS[DPM](**SD))
    reference_p = diffusers.DPMSolverMultistepScheduler(**SD)
    theirs = diffusers.UniPCMultistepScheduler(**SD, solver_order=3, solver_p=reference_p)
    ours.set_timesteps(8)
    theirs.set_timesteps(8)
    sample = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    run_parity(ours, theirs, theirs.timesteps, sample)
    assert ours.solver_p.step_index == theirs.solver_p.step_index == 8


X0_CASES = [
    (DPM, {**SD, "prediction_type": "sample"}),
    (DPM, {**SD, "prediction_type": "sample", "algorithm_type": "dpmsolver", **SIGMA_MIN}),
    (UNIPC, {**SD, "prediction_type": "sample"}),
    (UNIPC, {**SD, "prediction_type": "sample", "predict_x0": False, **SIGMA_MIN}),
]


@pytest.mark.parametrize("name, config", X0_CASES, ids=["dpmsolver++", "dpmsolver", "unipc-x0", "unipc-epsilon"])
def test_multistep_x0_estimate_is_the_clean_sample_a_sample_model_predicts(name, config):
    """diffusers returns no x0 from these solvers; ours does, also for the epsilon forms (converted back)."""
    scheduler = SCHEDULERS[name](**config)
    scheduler.set_timesteps(6)
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    for i, t in enumerate(scheduler.timesteps):
        clean = torch.randn(SHAPE, generator=torch.Generator().manual_seed(40 + i)).clamp(-1, 1)
        out = scheduler.step(clean, t, x)
        torch.testing.assert_close(out.pred_original_sample, clean, atol=2e-3, rtol=0)
        x = out.prev_sample


def test_flow_match_x0_estimate_and_step_count():
    scheduler = SCHEDULERS["FlowMatchEulerDiscreteScheduler"](shift=3.0)
    reference = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    scheduler.set_timesteps(5)
    reference.set_timesteps(5)
    assert scheduler.num_inference_steps == reference.num_inference_steps == 5
    clean = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(1))
    noise = torch.randn(2, 16, 8, generator=torch.Generator().manual_seed(2))
    sigma = float(scheduler.sigmas[0])
    out = scheduler.step(noise - clean, scheduler.timesteps[0], (1 - sigma) * clean + sigma * noise)
    torch.testing.assert_close(out.pred_original_sample, clean, atol=1e-5, rtol=0)


@pytest.mark.parametrize("time_shift_type", ["exponential", "linear"])
def test_flow_match_time_shift_matches_diffusers_for_any_power(time_shift_type):
    """The public ``time_shift(mu, power, t)``; pipelines pass power 1, where ``**`` and ``*`` agree."""
    ours = SCHEDULERS["FlowMatchEulerDiscreteScheduler"](use_dynamic_shifting=True, time_shift_type=time_shift_type)
    theirs = diffusers.FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type=time_shift_type)
    t = np.linspace(1.0, 0.05, 7)
    for power in (1.0, 2.0, 0.5):
        np.testing.assert_allclose(ours.time_shift(0.8, power, t), theirs.time_shift(0.8, power, t), rtol=0, atol=1e-12)


def test_threshold_sample_matches_diffusers_on_every_side_of_its_clamp():
    """Per-sample quantile s clamped to [1, sample_max_value]: quantiles below 1, between and above."""
    from diffblocks.components.schedulers.updates import threshold_sample

    reference = diffusers.DDPMScheduler(thresholding=True, sample_max_value=3.0, dynamic_thresholding_ratio=0.9)
    base = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    x = base * torch.tensor([0.3, 1.2, 6.0]).view(3, 1, 1, 1)  # 0.9-quantiles ~0.5, ~2, ~10
    for dtype in (torch.float32, torch.bfloat16):
        ours = threshold_sample(x.to(dtype), 0.9, 3.0)
        theirs = reference._threshold_sample(x.to(dtype))
        assert ours.dtype == theirs.dtype == dtype
        assert torch.equal(ours, theirs), dtype


def test_exp_alpha_bar_betas_match_diffusers():
    from diffblocks.components.schedulers.schedules import betas_for_alpha_bar
    from diffusers.schedulers.scheduling_ddpm import betas_for_alpha_bar as reference

    for kind in ("exp", "cosine", "laplace"):
        assert torch.equal(betas_for_alpha_bar(1000, kind=kind), reference(1000, alpha_transform_type=kind)), kind


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_small_log", "fixed_large", "fixed_large_log"])
def test_ddpm_variance_matches_diffusers(variance_type):
    from diffblocks.components.schedulers.updates import ddpm_variance

    ours, theirs = make_pair(DDPM, {**SD, "variance_type": variance_type})
    ours.set_timesteps(10)
    theirs.set_timesteps(10)
    for t in theirs.timesteps[:-1]:
        prev_t = ours.previous_timestep(t)
        expected = theirs._get_variance(t)
        got = ddpm_variance(ours.alphas_cumprod[t], ours.alphas_cumprod[prev_t], variance_type)
        assert torch.equal(got, expected), int(t)


def test_ddpm_steps_the_training_schedule_without_set_timesteps():
    """Before set_timesteps DDPM steps t -> t - 1 (training-time sampling), noise included down to t = 1."""
    ours, theirs = make_pair(DDPM, SD)
    x_ours = x_theirs = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    gen_ours, gen_theirs = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    for t in (999, 998, 3, 2, 1, 0):
        assert ours.previous_timestep(t) == theirs.previous_timestep(t) == t - 1
        out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(t))
        x_theirs = theirs.step(out, t, x_theirs, generator=gen_theirs).prev_sample
        x_ours = ours.step(out, t, x_ours, generator=gen_ours).prev_sample
        assert_close(x_ours, x_theirs, f"prev_sample at t={t}")


def test_ddpm_previous_timestep_and_custom_flag_follow_diffusers():
    ours, theirs = make_pair(DDPM, SD)
    for kwargs in ({"timesteps": [999, 500, 20]}, {"num_inference_steps": 4}):
        ours.set_timesteps(**kwargs)
        theirs.set_timesteps(**kwargs)
        assert ours.custom_timesteps is theirs.custom_timesteps
        for t in theirs.timesteps:
            assert int(ours.previous_timestep(t)) == int(theirs.previous_timestep(t))
    assert int(ours.previous_timestep(ours.timesteps[-1])) == -1


def test_ddpm_learned_variance_needs_the_doubled_output():
    """A fixed-variance DDPM given a learned-variance (2x channel) output fails like diffusers' does."""
    for scheduler in make_pair(DDPM, SD):
        scheduler.set_timesteps(4)
        t = scheduler.timesteps[0]
        with pytest.raises(RuntimeError):
            scheduler.step(torch.zeros(1, 6, 8, 8), t, torch.zeros(1, 3, 8, 8), generator=torch.Generator())


def test_ancestral_euler_inits_its_index_in_step_and_refuses_loop_indices():
    ours, theirs = make_pair("EulerAncestralDiscreteScheduler", SD)
    ours.set_timesteps(5)
    theirs.set_timesteps(5)
    assert ours.num_inference_steps == theirs.num_inference_steps == 5
    x = torch.randn(SHAPE, generator=torch.Generator().manual_seed(0))
    out = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    t = theirs.timesteps[0]  # no scale_model_input first: step finds its own index
    prev_theirs = theirs.step(out, t, x, generator=torch.Generator().manual_seed(2)).prev_sample
    prev_ours = ours.step(out, t, x, generator=torch.Generator().manual_seed(2)).prev_sample
    assert_close(prev_ours, prev_theirs, "first step")
    with pytest.raises(ConfigError, match="not the loop index 1"):
        ours.step(out, 1, x)


def _message(call) -> str:
    with pytest.raises(ConfigError) as err:
        call()
    return str(err.value)


def _stepped(name, config, steps=3, **set_kw):
    scheduler = SCHEDULERS[name](**config)
    scheduler.set_timesteps(steps, **set_kw)

    def run():
        x = torch.zeros(SHAPE)
        for t in scheduler.timesteps:
            x = scheduler.step(torch.zeros(SHAPE), t, x, generator=torch.Generator()).prev_sample

    return run


@pytest.mark.parametrize("name, config, expected", [
    (DPM, {}, "epsilon, sample, v_prediction or flow_prediction"),  # data-prediction form
    (DPM, {"algorithm_type": "dpmsolver", **SIGMA_MIN}, "epsilon, sample or v_prediction"),  # noise form
    (LCM, {}, "one of epsilon, sample, v_prediction"),
    (DDPM, {}, "one of epsilon, sample, v_prediction"),
])
def test_an_unknown_prediction_type_is_named_in_the_error(name, config, expected):
    message = _message(_stepped(name, {**config, "prediction_type": "x_start"}))
    assert message == f"{name}: config 'prediction_type' expects {expected}, got 'x_start'"


def test_dpm_solver_sde_noise_form_has_no_third_order():
    message = _message(_stepped(DPM, {"algorithm_type": "sde-dpmsolver", "solver_order": 3, **SIGMA_MIN}, 5))
    assert message.startswith(f"{DPM}: config 'algorithm_type' expects ")
    assert "sde-dpmsolver++ for solver_order=3" in message and message.endswith("got 'sde-dpmsolver'")


@pytest.mark.parametrize("name, make, words", [
    (DPM, lambda: SCHEDULERS[DPM](use_karras_sigmas=True, use_beta_sigmas=True), "only one of"),
    (DPM, lambda: SCHEDULERS[DPM]().set_timesteps(), "needs exactly one of"),
    (DPM, lambda: SCHEDULERS[DPM]().set_timesteps(4, timesteps=[999, 500, 200, 20]), "needs exactly one of"),
    (DPM, lambda: SCHEDULERS[DPM]().set_timesteps(4, sigmas=[14.6, 5.0, 1.0, 0.1]), "needs exactly one of"),
    (DPM, lambda: SCHEDULERS[DPM](use_karras_sigmas=True).set_timesteps(timesteps=[999, 500]),
     "custom timesteps cannot be combined with use_karras_sigmas=True"),
    (DPM, lambda: SCHEDULERS[DPM](use_flow_sigmas=True, prediction_type="flow_prediction").set_timesteps(
        timesteps=[999, 500]), "custom timesteps cannot be combined with use_flow_sigmas=True"),  # were dropped
    (UNIPC, lambda: SCHEDULERS[UNIPC]().set_timesteps(timesteps=[999, 500]), "does not take custom timesteps"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(), "needs exactly one of"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(4, timesteps=[999, 759, 499, 259]), "needs exactly one of"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(4, sigmas=[14.6, 5.0, 1.0, 0.1]), "needs exactly one of"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(4, original_inference_steps=2000),
     "num_inference_steps=2000 is more than the 1000 training timesteps"),  # the distillation grid's size
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(1001, original_inference_steps=1000),
     "num_inference_steps=1001 is more than the 1000 training timesteps"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(10, strength=0.1),
     "original_inference_steps x strength = 50 x 0.1 gives fewer than num_inference_steps=10"),
    (LCM, lambda: SCHEDULERS[LCM]().set_timesteps(60, original_inference_steps=50, strength=2.0),
     "num_inference_steps=60 is more than original_inference_steps=50"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(), "needs exactly one of"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(4, timesteps=[999, 500, 200, 20]), "needs exactly one of"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(4, sigmas=[14.6, 5.0, 1.0, 0.1]), "needs exactly one of"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(1001), "num_inference_steps=1001 is more than the 1000"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(timesteps=[999, 999, 500]), "strictly descending"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(timesteps=[500, 999, 100]), "strictly descending"),
    (DDPM, lambda: SCHEDULERS[DDPM]().set_timesteps(timesteps=[1000, 500]), "must start below 1000"),
    ("EulerAncestralDiscreteScheduler", lambda: SCHEDULERS["EulerAncestralDiscreteScheduler"]().set_timesteps(
        4, sigmas=[14.6, 5.0, 1.0, 0.1]), "takes num_inference_steps only"),
    ("EulerAncestralDiscreteScheduler", lambda: SCHEDULERS["EulerAncestralDiscreteScheduler"]().set_timesteps(
        4, timesteps=[999, 500, 200, 20]), "takes num_inference_steps only"),
])
def test_bad_schedule_arguments_raise_naming_the_scheduler(name, make, words):
    message = _message(make)
    assert message.startswith(name) and words in message, message


def test_dpm_solver_aliases_keep_the_other_defaults_out_of_a_switch():
    """``deis`` is stored as ``dpmsolver++``; keys left at their defaults still are not carried to DDIM."""
    ours, theirs = make_pair(DPM, {**SD, "algorithm_type": "deis", **SIGMA_MIN})
    assert ours.config.algorithm_type == theirs.config.algorithm_type == "dpmsolver++"
    ddim_ours = SCHEDULERS["DDIMScheduler"].from_config(ours.config)
    ddim_theirs = diffusers.DDIMScheduler.from_config(theirs.config)
    assert ddim_ours.config.timestep_spacing == ddim_theirs.config.timestep_spacing == "leading"
