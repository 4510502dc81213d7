"""Driving the scheduler (blocks/scheduling.py): custom schedules, strength tails, what ``step`` takes."""

import pytest
import torch

from diffblocks.blocks.scheduling import set_scheduler_timesteps, step_kwargs, strength_timesteps
from diffblocks.components.errors import ConfigError
from diffblocks.components.schedulers import DDIMScheduler, EulerDiscreteScheduler


@pytest.mark.parametrize("eta, expected", [(None, {}), (0.0, {"eta": 0.0}), (1.0, {"eta": 1.0})])
def test_step_kwargs_pass_eta_to_ddim(eta, expected):
    generator = torch.Generator()
    assert step_kwargs(DDIMScheduler(), generator, eta) == {**expected, "generator": generator}


def test_step_kwargs_leave_out_eta_where_step_takes_none():
    generator = torch.Generator()
    assert step_kwargs(EulerDiscreteScheduler(), generator, 1.0) == {"generator": generator}


class StepCountOnly:
    """A scheduler whose ``set_timesteps`` takes a step count only."""

    def set_timesteps(self, num_inference_steps, device=None):
        self.timesteps = torch.arange(num_inference_steps - 1, -1, -1)


def test_custom_timesteps_set_the_schedule_they_give():
    timesteps, n = set_scheduler_timesteps(EulerDiscreteScheduler(), timesteps=[999, 500, 1])
    assert n == 3 and timesteps.tolist() == [999, 500, 1]


@pytest.mark.parametrize("scheduler, custom, message", [
    (DDIMScheduler(), {"timesteps": [999, 1], "sigmas": [1.0, 0.0]}, "either custom timesteps or custom sigmas, not both"),
    (StepCountOnly(), {"timesteps": [999, 1]}, "StepCountOnly does not take custom timesteps"),
    (StepCountOnly(), {"sigmas": [1.0, 0.0]}, "StepCountOnly does not take custom sigmas"),
])
def test_custom_schedules_a_scheduler_cannot_take_are_refused(scheduler, custom, message):
    with pytest.raises(ConfigError, match=message):
        set_scheduler_timesteps(scheduler, 4, **custom)


@pytest.mark.parametrize("strength, steps", [(1.0, 10), (0.5, 5), (0.25, 2)])
def test_strength_keeps_the_tail_and_begins_the_scheduler_there(strength, steps):
    scheduler = DDIMScheduler()
    full, _ = set_scheduler_timesteps(scheduler, 10)
    tail, n = strength_timesteps(scheduler, 10, strength)
    assert n == steps and tail.tolist() == full[10 - steps:].tolist()
    assert scheduler.begin_index == 10 - steps


def test_denoising_start_keeps_the_steps_below_its_cutoff():
    scheduler = EulerDiscreteScheduler()
    full, _ = set_scheduler_timesteps(scheduler, 10)
    tail, n = strength_timesteps(scheduler, 10, 1.0, denoising_start=0.5)
    assert tail.tolist() == [t for t in full.tolist() if t < 500] and n == len(tail)
    assert scheduler.begin_index == 10 - n
