import pytest
import torch
from toy_blocks import make_block

from diffblocks.modular_pipelines import BlockState, InputParam, InsertableDict, OutputParam, PipelineState
from diffblocks.modular_pipelines.errors import BlockDeclarationError
from diffblocks.modular_pipelines.params import NO_DEFAULT


def test_params_are_immutable_values():
    p = InputParam("x", type_hint=int, default=3, metadata={"ui": "slider"})
    assert p == InputParam("x", type_hint=int, default=3)
    with pytest.raises(AttributeError):
        p.default = 4
    with pytest.raises(TypeError):
        p.metadata["ui"] = "box"
    assert p.replace(default=5).default == 5 and p.default == 3
    out = OutputParam("y", metadata={"ui": "image"})
    assert out.metadata == {"ui": "image"} and OutputParam("z").metadata is None
    with pytest.raises(TypeError):
        out.metadata["ui"] = "box"


def test_no_default_sentinel():
    p = InputParam("x")
    assert p.default is NO_DEFAULT and not p.has_default and p.default_value is None
    assert InputParam("x", default=0).has_default


def test_kwargs_type_collects_values():
    state = PipelineState()
    state.set("prompt_embeds", 1, kwargs_type="denoiser_input_fields")
    state.set("negative_prompt_embeds", 2, kwargs_type="denoiser_input_fields")
    state.set("other", 3)
    assert state.get_by_kwargs("denoiser_input_fields") == {"prompt_embeds": 1, "negative_prompt_embeds": 2}
    with pytest.raises(BlockDeclarationError, match="InputParam needs a name or a kwargs_type"):
        InputParam(None)
    assert OutputParam("a", kwargs_type="k").kwargs_type == "k"


def test_set_none_overwrites_an_earlier_value():
    """None is a value like any other: ``pipe(state=earlier, image=None)`` must forget the earlier image."""
    state = PipelineState({"image": "an image", "strength": 0.5})
    state.set("image", None)
    assert "image" in state and state.get("image", "absent") is None and state.values["image"] is None
    state.set("mask", None, kwargs_type="inputs")
    assert "mask" in state and state.get_by_kwargs("inputs") == {"mask": None}
    assert state.get(["image", "strength"]) == {"image": None, "strength": 0.5}


def test_block_state_attribute_errors_list_what_it_holds():
    bs = BlockState(latents=torch.zeros(1))
    with pytest.raises(AttributeError, match="no value 'latent'; it holds: latents"):
        bs.latent
    assert "latents: Tensor" in repr(bs)


def test_insertable_dict():
    assert list(InsertableDict({"a": 1, "b": 2}).items()) == [("a", 1), ("b", 2)]  # from a mapping, in its order
    d = InsertableDict([("a", 1), ("b", 2)])
    d.insert("c", 3, 1)
    assert list(d.items()) == [("a", 1), ("c", 3), ("b", 2)]
    d.insert("z", 0, -1)
    assert list(d) == ["a", "c", "b", "z"]
    with pytest.raises(KeyError, match="already present"):
        d.insert("a", 9, 0)
    copy = d.copy()
    copy.pop("a")
    assert "a" in d and isinstance(copy, InsertableDict)
    d["a"] = 5
    assert list(d)[0] == "a" and d["a"] == 5


@pytest.mark.parametrize("index, order", [
    (-1, ["a", "b", "c", "x"]),  # -1 is after the last
    (-2, ["a", "b", "x", "c"]),
    (-3, ["a", "x", "b", "c"]),
    (-9, ["x", "a", "b", "c"]),  # before the first, however far back
    (9, ["a", "b", "c", "x"]),
])
def test_insert_at_a_negative_index_counts_from_the_end(index, order):
    d = InsertableDict([("a", 1), ("b", 2), ("c", 3)])
    d.insert("x", 0, index)
    assert list(d) == order


def test_inserting_a_non_block_into_sub_blocks_names_the_key():
    from diffblocks.modular_pipelines.block import BlockDict

    blocks = BlockDict("MyBlocks", [("first", make_block("First", inputs=["x"], outputs=["y"]))])
    with pytest.raises(BlockDeclarationError, match="MyBlocks: sub-block 'second' must be a ModularPipelineBlocks"):
        blocks.insert("second", 42, 0)
    assert list(blocks) == ["first"]


def test_state_values_read_as_attributes():
    state = PipelineState({"images": [1, 2]})
    assert state.images == [1, 2] and state.images is state.get("images")
    with pytest.raises(AttributeError, match="no value 'latents'; it holds: images"):
        state.latents
    import copy
    import pickle

    assert copy.copy(state).values == state.values and pickle.loads(pickle.dumps(state)).images == [1, 2]


def test_get_gives_the_default_for_absent_names_one_or_many():
    state = PipelineState({"a": 1, "b": None})
    assert state.get("a", 5) == 1 and state.get("missing", 5) == 5 and state.get("b", 5) is None
    assert state.get(["a", "missing"], 0) == {"a": 1, "missing": 0}


def test_get_by_kwargs_keeps_the_order_values_were_tagged_in():
    state = PipelineState()
    for name in ("z", "a", "m"):
        state.set(name, name.upper(), "denoiser_input_fields")
    state.set("other", 1, "elsewhere")
    assert list(state.get_by_kwargs("denoiser_input_fields").items()) == [("z", "Z"), ("a", "A"), ("m", "M")]
    assert state.get_by_kwargs("nothing") == {}


def test_reprs_show_every_value_briefly_and_the_kwargs_groups():
    state = PipelineState()
    state.set("latents", torch.zeros(1, 4, 8, 8), "denoiser_input_fields")
    state.set("prompt", "a cat")
    shown = repr(state)
    assert "'latents': Tensor(dtype=torch.float32, shape=(1, 4, 8, 8))" in shown and "'prompt': 'a cat'" in shown
    assert "kwargs_mapping={" in shown and "'denoiser_input_fields': ['latents']" in shown
    assert "kwargs_mapping" not in repr(PipelineState({"x": 1}))
    block = repr(BlockState(strength=0.5, image=None))
    assert block.startswith("BlockState(\n") and "    strength: 0.5" in block and "    image: None" in block


def test_reprs_line_by_line():
    state = PipelineState({"steps": 4})
    state.set("prompt", "a cat", "guider_input_fields")
    assert repr(state).splitlines() == [
        "PipelineState(", "  values={", "    'steps': 4", "    'prompt': 'a cat'", "  },",
        "  kwargs_mapping={", "    'guider_input_fields': ['prompt']", "  },", ")"]
    assert repr(PipelineState({"steps": 4})).splitlines() == ["PipelineState(", "  values={", "    'steps': 4", "  },", ")"]
    assert repr(BlockState(strength=0.5, image=None)).splitlines() == [
        "BlockState(", "    strength: 0.5", "    image: None", ")"]


def test_a_state_copy_has_its_own_values_and_kwargs_groups():
    state = PipelineState()
    state.set("prompt", "a cat", "guider_input_fields")
    copy = state.copy()
    assert copy.get_by_kwargs("guider_input_fields") == {"prompt": "a cat"}
    copy.set("negative", "blurry", "guider_input_fields")
    copy.set("prompt", "a dog")
    assert state.get_by_kwargs("guider_input_fields") == {"prompt": "a cat"}


def test_an_input_a_block_replaces_goes_back_in_its_kwargs_group():
    block = make_block("Scale", inputs=[InputParam("embeds", kwargs_type="denoiser_input_fields")])()
    state = PipelineState({"embeds": 1})
    block_state = block.get_block_state(state)
    block_state.embeds = 2
    block.set_block_state(state, block_state)
    assert state.get_by_kwargs("denoiser_input_fields") == {"embeds": 2}


def test_a_kwargs_input_gets_every_value_tagged_with_its_group_and_only_changed_inputs_are_written_back():
    from diffblocks import SequentialPipelineBlocks

    def make(block_state):
        block_state.a, block_state.b, block_state.plain = 1, 2, 3

    seen = {}
    blocks = SequentialPipelineBlocks.from_blocks_dict({
        "make": make_block("Make", outputs=[OutputParam("a", kwargs_type="extras"),
                                            OutputParam("b", kwargs_type="extras"), "plain"], fn=make),
        # reads "plain" as one of its group without changing it: "plain" does not join the group
        "look": make_block("Look", inputs=[InputParam(None, kwargs_type="extras"), InputParam("plain", kwargs_type="extras")],
                           fn=lambda bs: seen.update(look=(bs.a, bs.b, bs.extras, bs.plain))),
        "use": make_block("Use", inputs=[InputParam(None, kwargs_type="extras")], fn=lambda bs: seen.update(use=bs.extras)),
    })
    state = blocks.init_pipeline()()
    assert seen == {"look": (1, 2, {"a": 1, "b": 2}, 3), "use": {"a": 1, "b": 2}}
    assert state.get_by_kwargs("extras") == {"a": 1, "b": 2} and state.get("plain") == 3


def test_a_default_of_none_is_no_default():
    assert not InputParam("x", default=None).has_default and InputParam("x", default=None) == InputParam("x")


def test_insertable_dict_update_setdefault_and_repr():
    d = InsertableDict()
    assert repr(d) == "InsertableDict()"
    d.update({"a": 1}, b=2)
    assert d.setdefault("c", 3) == 3 and d.setdefault("a", 9) == 1
    assert list(d.items()) == [("a", 1), ("b", 2), ("c", 3)]
    assert repr(d) == "InsertableDict(\n  0: ('a', 1)\n  1: ('b', 2)\n  2: ('c', 3)\n)"


def test_a_copy_of_sub_blocks_is_its_own_and_still_refuses_non_blocks_in_the_owner_s_name():
    from diffblocks.modular_pipelines.block import BlockDict

    blocks = BlockDict("MyBlocks", [("first", make_block("First", inputs=["x"], outputs=["y"]))])
    copy = blocks.copy()
    copy.pop("first")
    assert list(blocks) == ["first"] and isinstance(copy, BlockDict)
    with pytest.raises(BlockDeclarationError, match="MyBlocks: sub-block 'second'"):
        copy["second"] = 42


def test_block_state_membership_no_default_and_the_base_call():
    from diffblocks import ModularPipelineBlocks

    assert "x" in BlockState(x=None) and "y" not in BlockState(x=1)
    assert not NO_DEFAULT and repr(NO_DEFAULT) == "NO_DEFAULT"

    class Unfinished(ModularPipelineBlocks):
        pass

    with pytest.raises(NotImplementedError, match=r"^Unfinished must implement __call__\(self, components, state\)$"):
        Unfinished()(None, PipelineState())


def test_call_components_show_what_they_hold():
    import threading

    from diffblocks.modular_pipelines.call import CallComponents

    from types import SimpleNamespace

    pipe = SimpleNamespace(_components={"unet": 1, "vae": 2}, components={"unet": 1, "vae": 2})
    assert repr(CallComponents(pipe, threading.Event())) == "CallComponents(unet, vae)"
