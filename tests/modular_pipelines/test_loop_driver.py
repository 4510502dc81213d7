"""The core loop driver (LoopSequentialPipelineBlocks.__call__): steps over the timesteps with hooks, a progress
bar, the interrupt check, ``step_callback`` and diffusers' ``callback_on_step_end``."""

import threading

import pytest
import torch

from diffblocks.modular_pipelines import InputParam, LoopSequentialPipelineBlocks, ModularPipelineBlocks, OutputParam
from diffblocks.modular_pipelines.call import CallComponents
from diffblocks.modular_pipelines.errors import InputTypeError, InputValueError, UnknownInputError

TIMESTEPS = torch.tensor([3.0, 2.0, 1.0])


class AddTimestep(ModularPipelineBlocks):
    """One step: ``latents += t``; records the step in ``events`` when given."""

    inputs = [InputParam("latents", required=True), InputParam("events", type_hint=list)]
    intermediate_outputs = [OutputParam("latents"), OutputParam("last_t")]

    def __call__(self, components, block_state, i, t):
        block_state.latents = block_state.latents + t
        block_state.last_t = t
        if block_state.events is not None:
            block_state.events.append(("step", i, float(t)))
        return components, block_state


class Loop(LoopSequentialPipelineBlocks):
    """A loop on the core driver, recording its hooks."""

    loop_inputs = [InputParam("timesteps", required=True)]
    block_classes = [AddTimestep]
    block_names = ["add"]

    def before_loop(self, components, block_state):
        if block_state.events is not None:
            block_state.events.append("before_loop")

    def before_step(self, components, block_state, i, t):
        if block_state.events is not None:
            block_state.events.append(("before_step", i, float(t)))


class SampleLoop(Loop):
    latents_name = "sample"  # as DDPM's loop: the callbacks see this value as the latents
    loop_inputs = [InputParam("timesteps", required=True), InputParam("sample")]


class OwnCallLoop(LoopSequentialPipelineBlocks):
    """A loop that drives itself: it does not take the driver's callbacks."""

    block_classes = [AddTimestep]
    block_names = ["add"]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i, t in enumerate(TIMESTEPS):
            components, block_state = self.loop_step(components, block_state, i=i, t=t)
        self.set_block_state(state, block_state)
        return components, state


@pytest.fixture
def pipe():
    pipe = Loop().init_pipeline()
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run(pipe, **inputs):
    return pipe(timesteps=TIMESTEPS, latents=torch.zeros(1), output="latents", **inputs)


def test_each_timestep_runs_once_after_the_hooks(pipe):
    events = []
    assert run(pipe, events=events).item() == 6.0
    assert events == ["before_loop", ("before_step", 0, 3.0), ("step", 0, 3.0), ("before_step", 1, 2.0),
                      ("step", 1, 2.0), ("before_step", 2, 1.0), ("step", 2, 1.0)]


def test_the_progress_bar_counts_the_steps(pipe, capsys):
    pipe.set_progress_bar_config(disable=False)
    run(pipe)
    assert "3/3" in capsys.readouterr().err


def test_step_callback_sees_each_step_and_false_stops(pipe):
    seen = []
    run(pipe, step_callback=lambda i, t, latents: seen.append((i, float(t), latents.item())))
    assert seen == [(0, 3.0, 3.0), (1, 2.0, 5.0), (2, 1.0, 6.0)]
    assert run(pipe, step_callback=lambda i, t, latents: i < 1).item() == 5.0


def test_callback_on_step_end_sees_every_step_with_its_index_timestep_and_the_pipe(pipe):
    seen = []

    def callback(call_pipe, step_index, timestep, callback_kwargs):
        assert isinstance(call_pipe, CallComponents) and not call_pipe.interrupted
        seen.append((step_index, float(timestep), {k: v.item() for k, v in callback_kwargs.items()}))
        return callback_kwargs

    assert {"callback_on_step_end", "callback_on_step_end_tensor_inputs", "step_callback"} <= set(pipe.input_names)
    assert run(pipe, callback_on_step_end=callback).item() == 6.0
    assert seen == [(0, 3.0, {"latents": 3.0}), (1, 2.0, {"latents": 5.0}), (2, 1.0, {"latents": 6.0})]


def test_a_callback_ends_its_own_call_with_pipe_interrupt(pipe):
    """diffusers' callbacks stop a run through the pipe they get; here that stops this call and no other."""
    def stop_after_step_0(call_pipe, step_index, timestep, callback_kwargs):
        if step_index == 0:
            call_pipe.interrupt()

    assert run(pipe, callback_on_step_end=stop_after_step_0).item() == 3.0  # only step 0 ran
    assert run(pipe).item() == 6.0


def test_returned_values_replace_the_loop_s_values(pipe):
    """Zeroing the latents after step 1 leaves what the last step alone makes from zeros."""
    def zero_after_step_1(call_pipe, step_index, timestep, callback_kwargs):
        return {"latents": torch.zeros(1)} if step_index == 1 else None

    edited = run(pipe, callback_on_step_end=zero_after_step_1)
    last_step_alone = pipe(timesteps=TIMESTEPS[2:], latents=torch.zeros(1), output="latents")
    assert torch.equal(edited, last_step_alone) and edited.item() == 1.0


def test_callback_kwargs_hold_the_named_values(pipe):
    seen = []
    run(pipe, callback_on_step_end=lambda p, i, t, kwargs: seen.append(sorted(kwargs)),
        callback_on_step_end_tensor_inputs=["latents", "last_t", "timesteps"])
    assert seen == [["last_t", "latents", "timesteps"]] * 3


def test_the_default_tensor_input_is_the_loop_s_latents_name():
    pipe = SampleLoop().init_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe(timesteps=TIMESTEPS, latents=torch.zeros(1), sample=torch.ones(1),
         callback_on_step_end=lambda p, i, t, kwargs: seen.append(sorted(kwargs)),
         step_callback=lambda i, t, latents: seen.append(latents.item()))
    assert seen == [["sample"], 1.0] * 3


def test_unknown_tensor_inputs_are_refused_before_the_loop_starts(pipe):
    events = []
    with pytest.raises(InputValueError) as err:
        run(pipe, events=events, callback_on_step_end=lambda *args: None,
            callback_on_step_end_tensor_inputs=["latents", "latnts"])
    message = str(err.value)
    assert "'callback_on_step_end_tensor_inputs' names 'latnts' (did you mean latents?)" in message
    assert "block Loop" in message and "it holds: " in message and "timesteps" in message and "last_t" in message
    assert events == []  # not even before_loop ran


def test_a_returned_name_outside_the_tensor_inputs_is_refused(pipe):
    with pytest.raises(InputValueError, match=r"'callback_on_step_end' must return None or a dict whose keys are "
                                              r"among callback_on_step_end_tensor_inputs \(latents\), got \['noise'\]"):
        run(pipe, callback_on_step_end=lambda p, i, t, kwargs: {"noise": torch.zeros(1)})


def test_a_callback_that_is_not_callable_is_refused_before_the_run(pipe):
    with pytest.raises(InputTypeError, match="'callback_on_step_end' expects Callable"):
        run(pipe, callback_on_step_end="not a function")


def test_setting_the_interrupt_event_inside_the_callback_stops_before_the_next_step(pipe):
    stop = threading.Event()
    steps = []

    def callback(call_pipe, step_index, timestep, callback_kwargs):
        steps.append(step_index)
        if step_index == 0:
            stop.set()  # diffusers' ``pipe._interrupt = True``
        return callback_kwargs

    assert run(pipe, interrupt_event=stop, callback_on_step_end=callback).item() == 3.0
    assert steps == [0]
    assert run(pipe, callback_on_step_end=callback).item() == 6.0  # the next call has its own event


def test_a_loop_with_its_own_call_does_not_take_the_driver_s_callbacks():
    assert [p.name for p in OwnCallLoop().loop_inputs] == []
    pipe = OwnCallLoop().init_pipeline()
    assert pipe(latents=torch.zeros(1), output="latents").item() == 6.0
    with pytest.raises(UnknownInputError, match="'step_callback'"):
        pipe(latents=torch.zeros(1), step_callback=lambda *args: None)


def test_a_subclass_s_own_loop_inputs_are_joined_by_its_intermediate_inputs_and_the_driver_s():
    from diffblocks.modular_pipelines.loop import DRIVER_INPUTS

    class Declared(LoopSequentialPipelineBlocks):  # made here: the class statement is what is tested
        loop_inputs = [InputParam("timesteps", required=True)]
        loop_intermediate_inputs = [InputParam("offset")]
        block_classes = [AddTimestep]
        block_names = ["add"]

    assert [p.name for p in Declared().loop_inputs] == ["timesteps", "offset", *(p.name for p in DRIVER_INPUTS)]


@pytest.mark.parametrize("returned, shown", [(5, "got 5"), (("latents",), r"got \('latents',\)")])
def test_a_callback_returning_no_dict_is_refused_showing_what_it_returned(pipe, returned, shown):
    with pytest.raises(InputValueError, match=r"'callback_on_step_end' must return None or a dict .*" + shown):
        run(pipe, callback_on_step_end=lambda p, i, t, kwargs: returned)


def test_callbacks_get_none_for_a_value_the_loop_does_not_hold_yet():
    class Declares(AddTimestep):
        intermediate_outputs = AddTimestep.intermediate_outputs + [OutputParam("never_set")]

    class NoLatents(Loop):
        block_classes = [Declares]
        latents_name = "not_a_value"  # the loop holds nothing by this name

    pipe = NoLatents().init_pipeline()
    pipe.set_progress_bar_config(disable=True)
    seen = []
    pipe(timesteps=TIMESTEPS, latents=torch.zeros(1), callback_on_step_end_tensor_inputs=["never_set"],
         callback_on_step_end=lambda p, i, t, kwargs: seen.append(kwargs),
         step_callback=lambda i, t, latents: seen.append(latents))
    assert seen == [{"never_set": None}, None] * 3
    assert pipe(timesteps=TIMESTEPS, latents=torch.zeros(1), output="latents").item() == 6.0  # no callbacks: no check


def test_a_required_loop_input_an_earlier_block_left_none_is_named_before_the_loop_starts():
    from diffblocks import SequentialPipelineBlocks
    from diffblocks.modular_pipelines.errors import MissingInputError

    class NoSchedule(ModularPipelineBlocks):
        intermediate_outputs = [OutputParam("timesteps")]

        def __call__(self, components, state):
            block_state = self.get_block_state(state)
            block_state.timesteps = None  # e.g. a scheduler block that made no schedule
            self.set_block_state(state, block_state)
            return components, state

    pipe = SequentialPipelineBlocks.from_blocks_dict({"schedule": NoSchedule, "loop": Loop}).init_pipeline()
    events = []
    with pytest.raises(MissingInputError, match=r"^block 'loop' \(Loop\) needs the required input 'timesteps'"):
        pipe(latents=torch.zeros(1), events=events)
    assert events == []  # not even before_loop ran


def test_loop_items_gets_the_components_of_the_call():
    from diffblocks import ConfigSpec

    class FromComponents(Loop):
        expected_configs = [ConfigSpec("step_values", (5.0, 4.0))]

        def loop_items(self, components, block_state):
            return components.step_values  # a config value of the pipeline, not the timesteps

    pipe = FromComponents().init_pipeline()
    pipe.set_progress_bar_config(disable=True)
    assert pipe(timesteps=TIMESTEPS, latents=torch.zeros(1), output="latents").item() == 9.0


def test_loop_inputs_as_a_list_or_a_property_read_on_the_class_or_on_an_instance():
    from diffblocks.modular_pipelines.loop import DRIVER_INPUTS

    driver = [p.name for p in DRIVER_INPUTS]

    class Listed(Loop):
        loop_intermediate_inputs = [InputParam("carry")]

    class Computed(Loop):
        @property
        def loop_inputs(self):
            return [InputParam("timesteps", required=True), InputParam("extra")]

    def names(params):
        return [p.name for p in params]

    assert names(Listed.loop_inputs) == names(Listed().loop_inputs) == ["timesteps", "carry", *driver]
    assert isinstance(Computed.loop_inputs, property)  # on the class: the property itself, as Python gives it
    assert names(Computed().loop_inputs) == ["timesteps", "extra", *driver]
