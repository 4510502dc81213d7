"""pipe.loader on a small pipeline with a stand-in UNet: which image encoder and feature extractor an IP-Adapter
load leaves, which arguments reach the checkpoint reader, and which models a LoRA goes into.

Reading and installing checkpoints are recorded instead of done (their numbers are tested in
tests/components/test_ip_adapter.py and tests/presets/test_ip_adapter.py).
"""

import logging
from types import SimpleNamespace

import pytest
import torch
from tiny_ip_adapter import IMAGE_SIZE, tiny_image_encoder
from transformers import CLIPVisionModelWithProjection
from transformers.image_utils import SizeDict

from diffblocks import ComponentSpec
from diffblocks.blocks.stable_diffusion.ip_adapter import FEATURE_EXTRACTOR, IMAGE_ENCODER
from diffblocks.modular_pipelines import ModularPipelineBlocks, loader
from diffblocks.modular_pipelines.errors import AdapterError


def ip_pipeline():
    class IPBlock(ModularPipelineBlocks):
        expected_components = [ComponentSpec("unet"), IMAGE_ENCODER, FEATURE_EXTRACTOR]

        def __call__(self, components, state):
            return components, state

    pipe = IPBlock().init_pipeline()
    pipe.update_components(unet=SimpleNamespace(dtype=torch.float64, device=torch.device("cpu")))
    return pipe


@pytest.fixture
def calls(monkeypatch):
    """What reached read_ip_adapter, load_ip_adapters and try_resolve_file."""
    made = SimpleNamespace(read=[], installed=[], resolved=[])
    resolve = loader.try_resolve_file

    def read(src, name, sub, revision):
        made.read.append((src, name, sub, revision))
        return f"checkpoint {name}"

    def resolving(source, filename, subfolder=None, revision=None):
        made.resolved.append((subfolder, revision))
        return resolve(source, filename, subfolder=subfolder)

    monkeypatch.setattr(loader, "read_ip_adapter", read)
    monkeypatch.setattr(loader, "load_ip_adapters", lambda unet, checkpoints: made.installed.append(checkpoints))
    monkeypatch.setattr(loader, "try_resolve_file", resolving)
    return made


@pytest.fixture(scope="module")
def encoder_repo(tmp_path_factory):
    """h94/IP-Adapter's layout: models/image_encoder/ holds the CLIP vision model."""
    root = tmp_path_factory.mktemp("ip_repo")
    tiny_image_encoder().save_pretrained(root / "models" / "image_encoder")
    return root


def test_each_adapter_gets_its_source_subfolder_weight_name_and_the_revision(calls):
    pipe = ip_pipeline()
    pipe.loader.load_ip_adapter(["repo_a", "repo_b"], subfolder=["models", "sdxl_models"], weight_name="w.bin",
                                image_encoder_folder=None, revision="v1")
    assert calls.read == [("repo_a", "w.bin", "models", "v1"), ("repo_b", "w.bin", "sdxl_models", "v1")]
    assert calls.installed == [["checkpoint w.bin", "checkpoint w.bin"]] and pipe.image_encoder is None


@pytest.mark.parametrize("kwargs, name", [
    (dict(pretrained_model_name_or_path_or_dict=["a", "b"], weight_name=["1", "2", "3"]),
     "pretrained_model_name_or_path_or_dict has 2 entries for 3 adapters"),
    (dict(pretrained_model_name_or_path_or_dict=["a", "b", "c"], subfolder=["x", "y"]), "subfolder has 2 entries for 3"),
    (dict(pretrained_model_name_or_path_or_dict=["a", "b", "c"], weight_name=["1", "2"]), "weight_name has 2 entries"),
])
def test_lists_of_different_lengths_are_refused_naming_the_argument(calls, kwargs, name):
    with pytest.raises(AdapterError, match=f"load_ip_adapter: {name}"):
        ip_pipeline().loader.load_ip_adapter(**kwargs)
    assert calls.read == []


@pytest.mark.parametrize("subfolder, folder", [("models", "image_encoder"), ("elsewhere", "models/image_encoder")])
def test_the_image_encoder_is_loaded_from_its_folder_inside_the_subfolder_unless_the_folder_is_a_path(
        calls, encoder_repo, subfolder, folder):
    pipe = ip_pipeline()
    pipe.loader.load_ip_adapter(encoder_repo, subfolder=subfolder, weight_name="w.bin", image_encoder_folder=folder,
                                revision="v1")
    assert calls.resolved == [("models/image_encoder", "v1")]
    assert isinstance(pipe.image_encoder, CLIPVisionModelWithProjection) and pipe.image_encoder.dtype == torch.float64
    spec = pipe.get_component_spec("image_encoder")
    assert (spec.name, spec.repo, spec.subfolder, spec.revision) == ("image_encoder", str(encoder_repo), "models/image_encoder", "v1")
    # the feature extractor made from config now crops to the encoder's image size
    assert pipe.feature_extractor.crop_size["height"] == IMAGE_SIZE and pipe.feature_extractor.size["shortest_edge"] == IMAGE_SIZE


def test_the_encoder_is_loaded_as_a_clip_vision_model_with_projection_whatever_its_config_names(calls, tmp_path):
    from transformers import CLIPVisionModel

    CLIPVisionModel(tiny_image_encoder().config).save_pretrained(tmp_path / "image_encoder")  # names CLIPVisionModel
    pipe = ip_pipeline()
    pipe.loader.load_ip_adapter(tmp_path, weight_name="w.bin")
    assert type(pipe.image_encoder) is CLIPVisionModelWithProjection  # as diffusers: the image_embeds are needed


def test_no_encoder_folder_nothing_there_or_a_state_dict_say_so(calls, encoder_repo, caplog):
    pipe = ip_pipeline()
    with pytest.raises(AdapterError, match="no image encoder in .*/models/x/image_encoder"):
        pipe.loader.load_ip_adapter(encoder_repo, subfolder="", weight_name="w.bin", image_encoder_folder="models/x/image_encoder")
    with pytest.raises(AdapterError, match="given as a state dict"):
        pipe.loader.load_ip_adapter({"image_proj": {}}, weight_name="w.bin")
    with caplog.at_level(logging.INFO, logger="diffblocks"):
        pipe.loader.load_ip_adapter(encoder_repo, subfolder="models", weight_name="w.bin", image_encoder_folder=None)
    assert "no image encoder loaded (image_encoder_folder=None)" in caplog.text and pipe.image_encoder is None


def test_a_given_or_already_loaded_encoder_is_kept(calls, encoder_repo, caplog):
    pipe = ip_pipeline()
    given = tiny_image_encoder(seed=1)
    pipe.loader.load_ip_adapter(encoder_repo, subfolder="models", weight_name="w.bin", image_encoder=given)
    assert pipe.image_encoder is given and calls.resolved == []
    with caplog.at_level(logging.INFO, logger="diffblocks"):
        pipe.loader.load_ip_adapter(encoder_repo, subfolder="models", weight_name="w.bin")
    assert pipe.image_encoder is given and calls.resolved == [] and "image_encoder_folder=None" not in caplog.text


def test_a_given_encoder_needs_an_image_encoder_component(calls):
    class NoEncoder(ModularPipelineBlocks):
        expected_components = [ComponentSpec("unet")]

    pipe = NoEncoder().init_pipeline()
    pipe.update_components(unet=SimpleNamespace(dtype=torch.float32, device=torch.device("cpu")))
    with pytest.raises(AdapterError, match="no image_encoder component"):
        pipe.loader.load_ip_adapter("repo", weight_name="w.bin", image_encoder=tiny_image_encoder())
    pipe.loader.load_ip_adapter("repo", weight_name="w.bin")  # nothing to fill
    assert calls.installed == [["checkpoint w.bin"]]


@pytest.mark.parametrize("crop", [lambda s: SizeDict(height=s, width=s), lambda s: {"height": s, "width": s}])
def test_a_feature_extractor_already_at_the_encoder_size_is_kept(calls, crop):
    pipe = ip_pipeline()
    extractor = pipe.get_component_spec("feature_extractor").create(size=IMAGE_SIZE, crop_size=IMAGE_SIZE)
    extractor.crop_size = crop(IMAGE_SIZE)  # transformers 5 keeps a SizeDict, transformers 4 a dict
    pipe.update_components(feature_extractor=extractor)
    pipe.loader.load_ip_adapter("repo", weight_name="w.bin", image_encoder=tiny_image_encoder())
    assert pipe.feature_extractor is extractor
    extractor.crop_size = crop(224)  # not the encoder's size: made again from the spec, at that size
    pipe.loader.load_ip_adapter("repo", weight_name="w.bin")
    assert pipe.feature_extractor is not extractor and pipe.feature_extractor.crop_size["height"] == IMAGE_SIZE


def test_an_empty_feature_extractor_is_made_and_a_loaded_one_is_left_alone(calls, tmp_path):
    pipe = ip_pipeline()
    pipe.update_components(feature_extractor=None)
    pipe.loader.load_ip_adapter("repo", weight_name="w.bin", image_encoder=tiny_image_encoder())
    assert pipe.feature_extractor.crop_size["height"] == IMAGE_SIZE
    processor_class = type(FEATURE_EXTRACTOR.create())
    processor_class(size=224, crop_size=224).save_pretrained(tmp_path / "feature_extractor")
    pipe = ip_pipeline()
    pipe.update_components(feature_extractor=ComponentSpec("feature_extractor", FEATURE_EXTRACTOR.type_hint,
                                                           repo=str(tmp_path), subfolder="feature_extractor"))
    extractor = pipe.feature_extractor
    assert pipe.get_component_spec("feature_extractor").default_creation_method == "from_pretrained"
    pipe.loader.load_ip_adapter("repo", weight_name="w.bin", image_encoder=tiny_image_encoder())
    assert pipe.feature_extractor is extractor and extractor.crop_size["height"] == 224  # loaded from a repo: as it is


# --- LoRA and textual inversion: which models and pairs the loader hands on ---------------------------

class Toy(torch.nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.proj = torch.nn.Linear(6, 5)

    def forward(self, x):
        return self.proj(x)


def toy_lora(*components, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {f"{c}.proj.{ab}.weight": torch.randn(shape, generator=g)
            for c in components for ab, shape in (("lora_A", (2, 6)), ("lora_B", (5, 2)))}


def lora_pipeline(*names):
    class Models(ModularPipelineBlocks):
        expected_components = [ComponentSpec(n) for n in names]

    pipe = Models().init_pipeline()
    pipe.update_components(**{n: Toy(seed=i) for i, n in enumerate(names)})
    return pipe


X = torch.randn(3, 6, generator=torch.Generator().manual_seed(1))


def test_lora_layers_of_text_encoders_the_pipeline_lacks_are_skipped(caplog):
    pipe = lora_pipeline("unet")
    plain = pipe.unet(X)
    with caplog.at_level(logging.WARNING, logger="diffblocks"):
        name = pipe.loader.load_lora_weights(toy_lora("unet", "text_encoder", "text_encoder_2"), adapter_name="a")
    assert name == "a" and pipe.loader.get_list_adapters() == {"unet": ["a"]}
    assert "no text_encoder;" in caplog.text and "no text_encoder_2;" in caplog.text
    assert not torch.allclose(pipe.unet(X), plain)


def test_set_adapters_leaves_a_model_without_adapters_untouched():
    from diffblocks.components.spec import revision_of

    pipe = lora_pipeline("unet", "text_encoder")
    pipe.loader.load_lora_weights(toy_lora("unet"), adapter_name="a")
    before = revision_of(pipe.text_encoder)
    pipe.loader.set_adapters("a", 0.5)
    assert revision_of(pipe.text_encoder) == before and pipe.loader.get_active_adapters() == ["a"]


def test_fuse_lora_adds_the_adapter_at_its_weight_by_default():
    pipe = lora_pipeline("unet")
    pipe.loader.load_lora_weights(toy_lora("unet"), adapter_name="a")
    with_lora = pipe.unet(X)
    pipe.loader.fuse_lora()
    assert torch.allclose(pipe.unet(X), with_lora, atol=1e-6)
    pipe.loader.disable_lora()
    pipe.loader.unfuse_lora()
    pipe.loader.enable_lora()
    assert torch.allclose(pipe.unet(X), with_lora, atol=1e-6)


def test_delete_adapters_removes_the_named_ones_from_every_model_and_refuses_unknown_names():
    from diffblocks.components.errors import LoraError

    pipe = lora_pipeline("unet", "text_encoder")
    plain = pipe.unet(X)
    pipe.loader.load_lora_weights(toy_lora("unet", "text_encoder"), adapter_name="style")
    pipe.loader.load_lora_weights(toy_lora("unet", seed=1), adapter_name="b")
    with pytest.raises(LoraError, match="^no LoRA adapter named c; loaded: b, style$"):
        pipe.loader.delete_adapters(["style", "c"])  # one unknown: nothing deleted
    assert pipe.loader.get_list_adapters() == {"unet": ["style", "b"], "text_encoder": ["style"]}
    pipe.loader.delete_adapters("style")  # one name as a string
    assert pipe.loader.get_list_adapters() == {"unet": ["b"]}  # gone from both models
    pipe.loader.delete_adapters(["b"])
    assert torch.allclose(pipe.unet(X), plain)


@pytest.fixture
def text_pipeline(monkeypatch):
    """Tokenizers and text encoders as markers; what the loader hands to load_textual_inversion is recorded."""
    from diffblocks.components import textual_inversion

    class Text(ModularPipelineBlocks):
        expected_components = [ComponentSpec(n) for n in ("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2")]

    got = []
    monkeypatch.setattr(textual_inversion, "load_textual_inversion", lambda *args: got.append(args) or ["tok"])
    pipe = Text().init_pipeline()
    return pipe, got


@pytest.mark.parametrize("present, pairs", [
    (("tokenizer", "text_encoder", "tokenizer_2", "text_encoder_2"), [("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2")]),
    (("tokenizer", "text_encoder", "tokenizer_2"), [("tokenizer", "text_encoder")]),
    (("tokenizer", "text_encoder", "text_encoder_2"), [("tokenizer", "text_encoder")]),
    (("tokenizer", "tokenizer_2", "text_encoder_2"), None),
    (("text_encoder", "tokenizer_2", "text_encoder_2"), None),
])
def test_textual_inversion_goes_into_each_complete_tokenizer_and_encoder_pair(text_pipeline, present, pairs):
    from diffblocks.components.errors import TextualInversionError

    pipe, got = text_pipeline
    pipe.update_components(**{n: n for n in present})
    if pairs is None:
        with pytest.raises(TextualInversionError, match="tokenizer or text_encoder is not loaded"):
            pipe.loader.load_textual_inversion("embeds", token="<cat>", weight_name="cat.bin")
        return
    assert pipe.loader.load_textual_inversion("embeds", token="<cat>", weight_name="cat.bin") == ["tok"]
    assert got == [(pairs, "embeds", "<cat>", "cat.bin")]
