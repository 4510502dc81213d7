"""ControlNet and IP-Adapter workflows equal the pipeline calls with the same adapters bitwise (tolerance 0),
and an IP-Adapter loaded by a workflow leaves the shared UNet, and other workflows, as they were."""

import pytest
import torch
from node_workflows import link, preset_text2image
from tiny_ip_adapter import make_ip_adapter_repo
from tiny_models import build_pipeline, make_image

from diffblocks import ComponentSpec
from diffblocks.components.models.controlnet import ControlNetModel
from diffblocks.nodes import ArtifactStore, Executor
from diffblocks.presets import stable_diffusion

STEPS = 3


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: threads cost more than they give


@pytest.fixture(scope="module")
def controlnet_path(sd_repo, tmp_path_factory):
    import diffusers

    unet = diffusers.UNet2DConditionModel.from_pretrained(sd_repo, subfolder="unet")
    torch.manual_seed(10)
    net = diffusers.ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32))
    for p in net.parameters():  # from_unet zero-initialises the output convs: make them matter
        p.data += 0.05 * torch.randn_like(p)
    path = tmp_path_factory.mktemp("controlnet")
    net.save_pretrained(path)
    return path


def with_image(workflow, store, node_input, seed):
    sha = store.put_image(make_image(seed))
    workflow["nodes"][f"image_{seed}"] = {"type": "LoadImage", "inputs": {"image": {"artifact": sha}}}
    node, name = node_input
    workflow["nodes"][node]["inputs"][name] = link(f"image_{seed}", "image")
    return store.open_image(sha)


def test_controlnet_workflow_equals_the_pipeline(sd_repo, controlnet_path, tmp_path):
    store = ArtifactStore(tmp_path)
    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset="sd15-controlnet", controlnet_conditioning_scale=0.7)
    workflow["nodes"]["cn"] = {"type": "LoadControlNet", "inputs": {"repo": str(controlnet_path)}}
    workflow["nodes"]["run"]["inputs"]["controlnet"] = link("cn", "controlnet")
    control = with_image(workflow, store, ("run", "control_image"), seed=4)
    outputs = Executor(artifacts=store).run(workflow)

    pipe = build_pipeline(stable_diffusion.CONTROLNET_BLOCKS, sd_repo)
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(controlnet_path)).load())
    expected = pipe(prompt="a cat", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                    control_image=control, controlnet_conditioning_scale=0.7, output_type="pt", output="images")
    assert torch.equal(outputs["run"]["images"], expected)


def test_ip_adapter_workflow_equals_the_pipeline_and_leaves_the_shared_unet_alone(sd_repo, tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    folder = make_ip_adapter_repo(tmp_path / "ip", sd_repo)
    executor = Executor(artifacts=store)
    plain = preset_text2image(str(sd_repo), steps=STEPS)
    before = executor.run(plain)["run"]["images"]

    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset="sd15-ip-adapter")
    workflow["nodes"]["ipa"] = {"type": "LoadIPAdapter", "inputs": {
        "components": link("load", "components"), "repo": str(folder), "weight_name": "ip-adapter.bin", "scale": 0.6}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("ipa", "components")
    reference_image = with_image(workflow, store, ("run", "ip_adapter_image"), seed=1)
    outputs = executor.run(workflow)

    pipe = build_pipeline(stable_diffusion.IP_ADAPTER_BLOCKS, sd_repo)
    pipe.loader.load_ip_adapter(str(folder), subfolder="", weight_name="ip-adapter.bin")
    pipe.loader.set_ip_adapter_scale(0.6)
    expected = pipe(prompt="a cat", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                    ip_adapter_image=reference_image, output_type="pt", output="images")
    assert torch.equal(outputs["run"]["images"], expected)
    assert not torch.equal(expected, before)

    executor.free()  # the plain workflow computes again, on the shared UNet, and gets its old image
    assert torch.equal(executor.run(plain)["run"]["images"], before)


def test_ip_adapter_and_clip_vision_files_from_comfyuis_model_folders(sd_repo, tmp_path, monkeypatch):
    """ComfyUI keeps the adapter alone in ipadapter/ and the image encoder as one file in clip_vision/ (no config):
    the encoder gets the shipped config of its size (here a folder holding the tiny encoder's stands in for the
    shipped ones), and the workflow draws what the same adapter draws from IP-Adapter's own layout. An adapter file
    with no image encoder at all says how to give one."""
    import json
    import shutil

    import diffblocks.components.checkpoints as checkpoints
    from diffblocks.nodes import NodeRunError

    folder = make_ip_adapter_repo(tmp_path / "ip", sd_repo)
    models = tmp_path / "models"
    (models / "ipadapter").mkdir(parents=True)
    (models / "clip_vision").mkdir()
    shutil.copy(folder / "ip-adapter-plus.safetensors", models / "ipadapter" / "ip-adapter-plus_tiny.safetensors")
    shutil.copy(folder / "image_encoder" / "model.safetensors", models / "clip_vision" / "tiny-vit.safetensors")
    shipped = tmp_path / "family_configs" / "clip-vision-tiny"
    shipped.mkdir(parents=True)
    config = json.loads((folder / "image_encoder" / "config.json").read_text())
    (shipped / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(checkpoints, "FAMILY_CONFIGS", shipped.parent)

    store = ArtifactStore(tmp_path / "artifacts")
    executor = Executor(artifacts=store, model_folders=[models])
    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset="sd15-ip-adapter")
    workflow["nodes"]["ipa"] = {"type": "LoadIPAdapter", "inputs": {
        "components": link("load", "components"), "repo": "ip-adapter-plus_tiny.safetensors",
        "image_encoder": "tiny-vit.safetensors", "scale": 0.6}}
    workflow["nodes"]["run"]["inputs"]["components"] = link("ipa", "components")
    with_image(workflow, store, ("run", "ip_adapter_image"), seed=1)
    got = executor.run(workflow)["run"]["images"]
    workflow["nodes"]["ipa"]["inputs"].update(repo=str(folder), weight_name="ip-adapter-plus.safetensors")
    del workflow["nodes"]["ipa"]["inputs"]["image_encoder"]
    assert torch.equal(got, Executor(artifacts=store).run(workflow)["run"]["images"])

    workflow["nodes"]["ipa"]["inputs"] = {"components": link("load", "components"),
                                          "repo": "ip-adapter-plus_tiny.safetensors"}
    with pytest.raises(NodeRunError) as caught:
        executor.run(workflow)
    problem = caught.value.error_json()
    assert (problem["node"], problem["input"]) == ("ipa", "image_encoder")
    assert problem["message"] == ("LoadIPAdapter failed: an IP-Adapter file needs 'image_encoder': it comes without "
                                  "one; give a CLIP vision file as in ComfyUI's clip_vision folder, a folder or a Hub "
                                  "repo")


def test_the_auto_preset_takes_a_controlnet_and_an_ip_adapter_together(sd_repo, controlnet_path, tmp_path):
    """One node for both adapters, as ComfyUI graphs often have them: bitwise the pipeline of the same preset."""
    store = ArtifactStore(tmp_path / "artifacts")
    folder = make_ip_adapter_repo(tmp_path / "ip", sd_repo)
    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset="sd15-auto", controlnet_conditioning_scale=0.7)
    workflow["nodes"]["cn"] = {"type": "LoadControlNet", "inputs": {"repo": str(controlnet_path)}}
    workflow["nodes"]["ipa"] = {"type": "LoadIPAdapter", "inputs": {
        "components": link("load", "components"), "repo": str(folder), "weight_name": "ip-adapter.bin", "scale": 0.6}}
    workflow["nodes"]["run"]["inputs"].update(components=link("ipa", "components"), controlnet=link("cn", "controlnet"))
    control = with_image(workflow, store, ("run", "control_image"), seed=4)
    reference_image = with_image(workflow, store, ("run", "ip_adapter_image"), seed=1)
    outputs = Executor(artifacts=store).run(workflow)

    pipe = build_pipeline(stable_diffusion.AUTO_BLOCKS, sd_repo)
    pipe.update_components(controlnet=ComponentSpec("controlnet", ControlNetModel, repo=str(controlnet_path)).load())
    pipe.loader.load_ip_adapter(str(folder), subfolder="", weight_name="ip-adapter.bin")
    pipe.loader.set_ip_adapter_scale(0.6)
    expected = pipe(prompt="a cat", num_inference_steps=STEPS, generator=torch.Generator().manual_seed(0),
                    control_image=control, ip_adapter_image=reference_image, controlnet_conditioning_scale=0.7,
                    output_type="pt", output="images")
    assert torch.equal(outputs["run"]["images"], expected)


@pytest.mark.parametrize("preset, image_input, wire", [
    ("sd15-controlnet", "control_image", "controlnet"), ("sd15-auto", "control_image", "controlnet"),
    ("sd15-ip-adapter", "ip_adapter_image", "components"), ("sd15-auto", "ip_adapter_image", "components")])
def test_an_adapters_image_without_the_adapter_names_the_node_to_wire_before_any_step(
        sd_repo, tmp_path, monkeypatch, preset, image_input, wire):
    """A control image with no ControlNet wired, or a reference image on components no Load IP Adapter node
    passed: one error on the input to wire, naming the loader node, and no step of the preset runs."""
    import diffblocks.nodes.block_nodes as block_nodes
    from diffblocks.nodes import NodeRunError

    ran = []
    monkeypatch.setattr(block_nodes, "run_block", lambda *args: ran.append(args))
    store = ArtifactStore(tmp_path)
    workflow = preset_text2image(str(sd_repo), steps=STEPS, preset=preset)
    with_image(workflow, store, ("run", image_input), seed=4)
    with pytest.raises(NodeRunError) as caught:
        Executor(artifacts=store).run(workflow)
    error = caught.value.error_json()
    loader = "Load ControlNet" if wire == "controlnet" else "Load IP Adapter"
    assert (error["node"], error["input"]) == ("run", wire) and loader in error["message"]
    assert not ran
