"""FLUX.1 in the node engine: the ``preset:flux-text2image`` node on a ``LoadComponents`` of a FLUX repo gives
the pipeline's images bitwise (the catalog builds the node types from the presets and blocks by itself)."""

import torch
from node_workflows import preset_text2image
from tiny_models import build_pipeline

from diffblocks.nodes import Executor
from diffblocks.presets import flux

SIZE = dict(height=32, width=32, max_sequence_length=16)


def test_preset_node_equals_the_pipeline_call(flux_dev_repo):
    workflow = preset_text2image(str(flux_dev_repo), prompt="a dog", seed=3, steps=2, preset="flux-text2image", **SIZE)
    events = []
    outputs = Executor().run(workflow, on_event=events.append)
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, flux_dev_repo)
    expected = pipe(prompt="a dog", num_inference_steps=2, generator=torch.Generator().manual_seed(3),
                    output_type="pt", output="images", **SIZE)
    assert torch.equal(outputs["run"]["images"], expected)
    assert [(e["step"], e["total"]) for e in events if e["type"] == "node.progress"] == [(1, 2), (2, 2)]
