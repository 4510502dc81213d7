"""The data-flow graph (networkx), validate() and the mermaid rendering, over several tree shapes."""

import networkx as nx
import pytest
from toy_blocks import AutoImageBlocks, InputBlock, ImageEncoderBlock, LoopBlock, LoopWrapper, make_block

from diffblocks.modular_pipelines import AutoPipelineBlocks, InputParam, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import PipelineValidationError
from diffblocks.modular_pipelines.graph import SOURCE


def sequential():
    return SequentialPipelineBlocks.from_blocks_dict({"input": InputBlock, "image_encoder": ImageEncoderBlock})


def test_sequential_graph_edges_carry_names():
    g = sequential().graph()
    assert isinstance(g, nx.DiGraph)
    assert g.edges["input", "image_encoder"]["names"] == ["batch_size"]
    assert set(g.edges[SOURCE, "input"]["names"]) == {"prompt", "num_images_per_prompt"}
    assert g.edges[SOURCE, "image_encoder"]["names"] == ["image"]


def test_nested_loop_and_auto_graph():
    blocks = SequentialPipelineBlocks.from_blocks_dict({
        "auto": AutoImageBlocks,
        "denoise": LoopWrapper.from_blocks_dict({"a": LoopBlock, "b": LoopBlock}),
    })
    g = blocks.graph()
    assert {"auto.inpaint", "auto.img2img", "auto.text2img", "denoise", "denoise.a", "denoise.b"} <= set(g.nodes)
    assert g.nodes["denoise"]["kind"] == "loop"
    assert g.edges["denoise.a", "denoise.b"]["names"] == ["x"]
    assert nx.is_directed_acyclic_graph(g)


@pytest.mark.parametrize("shape", ["sequential", "loop", "auto"])
def test_mermaid_lists_every_node(shape):
    blocks = {
        "sequential": sequential(),
        "loop": LoopWrapper.from_blocks_dict({"a": LoopBlock}),
        "auto": AutoImageBlocks(),
    }[shape]
    text = blocks.to_mermaid()
    assert text.startswith("flowchart TD")
    for node in blocks.graph().nodes:
        if node != SOURCE:
            assert f'"{node}<br/>' in text


def test_validate_collects_every_problem_at_once():
    Needs = make_block("Needs", inputs=[InputParam("latents", required=True)])
    Makes = make_block("Makes", outputs=["latents"])
    Img = make_block("Img", outputs=["image_latents"])
    Txt = make_block("Txt", outputs=[])
    UsesImage = make_block("UsesImage", inputs=[InputParam("image_latents", required=True)])
    auto = AutoPipelineBlocks.from_blocks_dict({"img": Img, "txt": Txt}, trigger_inputs=["image", None])
    shared = Makes()
    blocks = SequentialPipelineBlocks.from_blocks_dict(
        {"needs": Needs, "makes": shared, "again": shared, "encode": auto, "use": UsesImage}
    )
    with pytest.raises(PipelineValidationError) as err:
        blocks.validate()
    text = str(err.value)
    assert text.startswith("3 problems:")
    assert "'latents' is required by 'needs' (Needs) but is only produced after it runs" in text
    assert "auto block 'encode': branches output different names; 'image_latents' is required by 'use' but branch txt" in text
    assert "is used at more than one place" in text


def test_validate_with_given_inputs_reports_what_nobody_gives():
    blocks = sequential()
    blocks.validate()  # nothing required
    Needs = make_block("Needs", inputs=[InputParam("prompt", required=True)])
    with pytest.raises(PipelineValidationError, match="'prompt' is required by 'needs'.*not given"):
        SequentialPipelineBlocks.from_blocks_dict({"needs": Needs}).validate(inputs=["seed"])
    SequentialPipelineBlocks.from_blocks_dict({"needs": Needs}).validate(inputs=["prompt"])
