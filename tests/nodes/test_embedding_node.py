"""A workflow with ``LoadTextualInversion`` equals the pipeline with the same embedding loaded, bitwise (tolerance 0),
for SD 1.x and SDXL (both encoders); the shared tokenizers and text encoders, and a plain workflow run afterwards,
stay as they were; the file comes by name from the model folders' ``embeddings/``."""

import json

import pytest
import torch
from node_workflows import link, preset_text2image
from safetensors.torch import save_file
from tiny_models import build_pipeline

from diffblocks.nodes import Executor, NodeRunError, catalog
from diffblocks.presets import stable_diffusion, stable_diffusion_xl

STEPS = 2
pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


def hidden(repo, encoder):
    return json.loads((repo / encoder / "config.json").read_text())["hidden_size"]


def vectors(repo, encoder, seed):
    return torch.randn(2, hidden(repo, encoder), generator=torch.Generator().manual_seed(seed))


def with_embedding(workflow, node, source, file, **inputs):
    workflow["nodes"][node] = {"type": "LoadTextualInversion",
                               "inputs": {"components": link(source, "components"), "file": file, **inputs}}
    workflow["nodes"]["run"]["inputs"]["components"] = link(node, "components")
    return workflow


def test_it_is_in_the_catalog_and_takes_names_from_embeddings():
    described = catalog()["LoadTextualInversion"]
    assert described["inputs"]["components"]["socket"] == "components"
    assert described["inputs"]["file"]["schema"]["x-model-folder"] == "embeddings"


def test_sd_embeddings_equal_the_pipeline_and_leave_the_shared_models_alone(sd_repo, tmp_path):
    (tmp_path / "embeddings").mkdir()
    save_file({"emb_params": vectors(sd_repo, "text_encoder", 3)}, tmp_path / "embeddings" / "inkstyle.safetensors")
    save_file({"emb_params": vectors(sd_repo, "text_encoder", 4)}, tmp_path / "embeddings" / "other.safetensors")
    executor = Executor(model_folders=[tmp_path])
    prompt = "a cat, inkstyle, <o>"
    plain = preset_text2image(str(sd_repo), prompt=prompt, steps=STEPS)
    before = executor.run(plain)["run"]["images"]
    tokenizer = executor.run(plain)["load"]["tokenizer"]
    vocabulary = len(tokenizer)

    one = with_embedding(preset_text2image(str(sd_repo), prompt=prompt, steps=STEPS), "ti", "load", "inkstyle.safetensors")
    two = with_embedding(with_embedding(preset_text2image(str(sd_repo), prompt=prompt, steps=STEPS), "ti", "load",
                                        "inkstyle.safetensors"), "ti2", "ti", "other.safetensors", token="<o>")
    got_one, got_two = executor.run(one)["run"]["images"], executor.run(two)["run"]["images"]

    pipe = build_pipeline(stable_diffusion.TEXT2IMAGE_BLOCKS, sd_repo)
    call = dict(prompt=prompt, num_inference_steps=STEPS, output_type="pt", output="images")
    pipe.loader.load_textual_inversion(str(tmp_path / "embeddings" / "inkstyle.safetensors"), token="inkstyle")
    assert torch.equal(got_one, pipe(generator=torch.Generator().manual_seed(0), **call))
    pipe.loader.load_textual_inversion(str(tmp_path / "embeddings" / "other.safetensors"), token="<o>")
    assert torch.equal(got_two, pipe(generator=torch.Generator().manual_seed(0), **call))
    assert not torch.equal(got_one, before) and not torch.equal(got_two, got_one)

    assert len(tokenizer) == vocabulary and "inkstyle" not in tokenizer.get_vocab()  # the shared one is as it was
    assert torch.equal(executor.run(plain)["run"]["images"], before)  # cached: the shared models did not change
    executor.free()
    assert torch.equal(executor.run(plain)["run"]["images"], before)  # computed again on them


def test_sdxl_embeddings_reach_both_encoders(sdxl_repo, tmp_path):
    file = tmp_path / "sdxlstyle.safetensors"
    save_file({"clip_l": vectors(sdxl_repo, "text_encoder", 5), "clip_g": vectors(sdxl_repo, "text_encoder_2", 6)}, file)
    prompt = "a cat, sdxlstyle"
    workflow = with_embedding(preset_text2image(str(sdxl_repo), prompt=prompt, steps=STEPS, preset="sdxl-text2image"),
                              "ti", "load", str(file))
    got = Executor().run(workflow)["run"]["images"]
    pipe = build_pipeline(stable_diffusion_xl.TEXT2IMAGE_BLOCKS, sdxl_repo)
    pipe.loader.load_textual_inversion(str(file), token="sdxlstyle")
    expected = pipe(prompt=prompt, num_inference_steps=STEPS, output_type="pt", output="images",
                    generator=torch.Generator().manual_seed(0))
    assert torch.equal(got, expected)


def test_an_embedding_of_the_wrong_size_names_the_node(sd_repo, tmp_path):
    file = tmp_path / "wide.safetensors"
    save_file({"emb_params": torch.randn(1, hidden(sd_repo, "text_encoder") + 1)}, file)
    with pytest.raises(NodeRunError, match=r"node 'ti': LoadTextualInversion failed: .*wide"):
        Executor().run(with_embedding(preset_text2image(str(sd_repo), steps=STEPS), "ti", "load", str(file)))
