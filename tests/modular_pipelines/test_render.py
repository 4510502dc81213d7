"""One renderer for repr and doc of every block type."""

from toy_blocks import AutoImageBlocks, LoopBlock, LoopWrapper, make_block

from diffblocks.components.spec import ComponentSpec, ConfigSpec
from diffblocks.modular_pipelines import InputParam, OutputParam, SequentialPipelineBlocks


class WithComponents(make_block("Base", inputs=[InputParam("prompt", type_hint=str, required=True, description="the prompt"),
                                                 InputParam("steps", type_hint=int, default=50, description="how many")],
                                 outputs=[OutputParam("embeds", description="text embeddings")])):
    expected_components = [ComponentSpec("unet", type_hint=dict, description="the denoiser")]
    expected_configs = [ConfigSpec("force_zeros_for_empty_prompt", True)]


def test_repr_shows_inputs_outputs_components_configs():
    text = repr(WithComponents())
    assert text.startswith("WithComponents(")
    assert "prompt (str, required)" in text and "steps (int, default=50)" in text
    assert "embeds (Any)" in text and "unet (dict)" in text and "force_zeros_for_empty_prompt = True" in text


def test_doc_puts_descriptions_under_params():
    lines = WithComponents().doc.splitlines()
    i = lines.index("    prompt (str, required)")
    assert lines[i + 1].strip() == "the prompt"


def test_sub_block_tree_and_triggers():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"auto": AutoImageBlocks, "loop": LoopWrapper.from_blocks_dict({"b": LoopBlock})})
    text = repr(blocks)
    assert "[0] auto (AutoImageBlocks)" in text
    assert "[0] inpaint (InpaintBlock)  [when 'mask' is given]" in text
    assert "[2] text2img (TextToImageBlock)  [default]" in text
    assert "[0] b (LoopBlock)" in text
    assert repr(AutoImageBlocks()).count("Inputs:") == 1
