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


def test_a_lora_node_on_flux_equals_the_pipeline_with_the_lora(flux_dev_repo, tmp_path):
    from safetensors.torch import save_file

    transformer = build_pipeline(flux.TEXT2IMAGE_BLOCKS, flux_dev_repo).transformer
    g = torch.Generator().manual_seed(4)
    lora = {}
    for name, module in transformer.named_modules():
        if name.endswith(("attn.to_q", "attn.to_v", "proj_mlp")):
            lora[f"transformer.{name}.lora_A.weight"] = torch.randn(4, module.in_features, generator=g) * 0.1
            lora[f"transformer.{name}.lora_B.weight"] = torch.randn(module.out_features, 4, generator=g) * 0.1
    save_file(lora, tmp_path / "pytorch_lora_weights.safetensors")
    workflow = preset_text2image(str(flux_dev_repo), prompt="a dog", seed=3, steps=2, preset="flux-text2image", **SIZE)
    workflow["nodes"]["lora"] = {"type": "LoadLoRA", "inputs": {"components": {"node": "load", "output": "components"},
                                                                "repo": str(tmp_path), "scale": 0.6}}
    workflow["nodes"]["run"]["inputs"]["components"] = {"node": "lora", "output": "components"}
    got = Executor().run(workflow)["run"]["images"]
    pipe = build_pipeline(flux.TEXT2IMAGE_BLOCKS, flux_dev_repo)
    call = dict(prompt="a dog", num_inference_steps=2, output_type="pt", output="images", **SIZE)
    plain = pipe(generator=torch.Generator().manual_seed(3), **call)
    pipe.loader.load_lora_weights(str(tmp_path))
    pipe.loader.set_adapters(pipe.loader.get_active_adapters(), 0.6)
    expected = pipe(generator=torch.Generator().manual_seed(3), **call)
    assert torch.equal(got, expected) and (got - plain).abs().max() > 1e-3


def test_a_flux_bundle_into_an_sd_preset_says_which_preset_takes_it(flux_dev_repo):
    import pytest

    from diffblocks.nodes import WorkflowError

    with pytest.raises(WorkflowError) as caught:  # the folder's model_index.json says FLUX: refused before it runs
        Executor().run(preset_text2image(str(flux_dev_repo), steps=2))  # preset sd15-text2image
    [problem] = caught.value.errors
    assert (problem["node"], problem["input"]) == ("run", "components")
    assert problem["message"].endswith("are a FLUX.1 model's; preset 'sd15-text2image' takes a Stable Diffusion "
                                       "1.x / 2.x model's: use preset:flux-text2image")
