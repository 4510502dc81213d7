"""Error messages: they name the block path, the class, the param, what was expected and what was given."""

import pytest
import torch
from toy_blocks import LoopBlock, LoopWrapper, make_block

from diffblocks.modular_pipelines import InputParam, OutputParam, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import (
    BlockDeclarationError,
    BlockExecutionError,
    InputTypeError,
    MissingInputError,
    OutputNotFoundError,
    OutputNotSetError,
    UnknownInputError,
)


def _boom(block_state):
    raise ValueError("bad latents")


Steps = make_block("Steps", inputs=[InputParam("num_inference_steps", type_hint=int, default=50)], outputs=["n"],
                   fn=lambda s: setattr(s, "n", s.num_inference_steps))
Needs = make_block("Needs", inputs=[InputParam("prompt", type_hint=str, required=True, description="what to draw")])
Boom = make_block("Boom", inputs=[InputParam("latents"), InputParam("prompt")], fn=_boom)


def nested(inner):
    return SequentialPipelineBlocks.from_blocks_dict({"steps": Steps, "denoise": SequentialPipelineBlocks.from_blocks_dict({"denoiser": inner})})


def test_missing_required_input_names_input_path_and_class():
    with pytest.raises(MissingInputError) as err:
        nested(Needs).init_pipeline()()
    assert "'denoise.denoiser' (Needs)" in str(err.value)
    assert "'prompt'" in str(err.value) and "what to draw" in str(err.value)


def test_exception_inside_block_is_one_located_error_from_the_cause():
    with pytest.raises(BlockExecutionError) as err:
        nested(Boom).init_pipeline()(latents=torch.zeros(2, 4, 8, 8), prompt="x" * 200)
    text = str(err.value)
    assert "'denoise.denoiser' (Boom)" in text and "ValueError: bad latents" in text
    assert "latents=Tensor(dtype=torch.float32, shape=(2, 4, 8, 8))" in text
    assert "..." in text and "x" * 100 not in text  # long strings are cut
    assert isinstance(err.value.__cause__, ValueError)
    assert err.value.path == "denoise.denoiser"


def test_exception_inside_loop_sub_block_names_the_loop_path():
    class Bad(LoopBlock):
        def __call__(self, components, block_state, i):
            raise RuntimeError("nan in step")

    blocks = SequentialPipelineBlocks.from_blocks_dict({"denoise": LoopWrapper.from_blocks_dict({"ok": LoopBlock, "bad": Bad})})
    with pytest.raises(BlockExecutionError) as err:
        blocks.init_pipeline()(num_steps=2, x=0)
    assert "'denoise.bad' (Bad)" in str(err.value) and "x=1" in str(err.value)


def test_wrong_type_is_refused_before_the_block_runs():
    ran = []
    Typed = make_block("Typed", inputs=[InputParam("num_inference_steps", type_hint=int)], fn=lambda s: ran.append(1))
    with pytest.raises(InputTypeError) as err:
        SequentialPipelineBlocks.from_blocks_dict({"steps": Typed}).init_pipeline()(num_inference_steps="20")
    assert ran == []
    assert "'steps' (Typed)" in str(err.value) and "expects int" in str(err.value) and "'20'" in str(err.value)


def test_tensor_type_hint_checked():
    Typed = make_block("Typed", inputs=[InputParam("latents", type_hint=torch.Tensor)])
    pipe = Typed().init_pipeline()
    pipe(latents=torch.zeros(1))
    with pytest.raises(InputTypeError, match="expects Tensor"):
        pipe(latents=[0.0])


def test_unknown_keyword_lists_valid_inputs_and_closest_match():
    pipe = SequentialPipelineBlocks.from_blocks_dict({"steps": Steps}).init_pipeline()
    with pytest.raises(UnknownInputError) as err:
        pipe(num_inference_step=3)
    assert "did you mean num_inference_steps?" in str(err.value)
    assert "num_inference_steps" in str(err.value).split("takes:")[1]


def test_unknown_output_name():
    pipe = SequentialPipelineBlocks.from_blocks_dict({"steps": Steps}).init_pipeline()
    with pytest.raises(OutputNotFoundError, match="did you mean n"):
        pipe(output="nn")


def test_declared_output_not_set():
    Lazy = make_block("Lazy", outputs=["result"])
    with pytest.raises(OutputNotSetError, match="'lazy' \\(Lazy\\) declares the output 'result'"):
        SequentialPipelineBlocks.from_blocks_dict({"lazy": Lazy}).init_pipeline()()


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: InputParam("x", required=True, default=3), "required and has a default"),
        (lambda: make_block("Dup", inputs=["a", "a"])(), "declares inputs more than once: a"),
        (lambda: make_block("DupOut", outputs=["o", OutputParam("o")])(), "intermediate outputs more than once: o"),
        (lambda: SequentialPipelineBlocks.from_blocks_dict([("a", Steps), ("a", Steps)]), "block names more than once: a"),
        (lambda: SequentialPipelineBlocks.from_blocks_dict({"a": 3}), "sub-block 'a' must be a ModularPipelineBlocks"),
    ],
)
def test_declaration_errors(build, message):
    with pytest.raises(BlockDeclarationError, match=message):
        build()
