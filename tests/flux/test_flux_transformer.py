"""FluxTransformer2DModel against diffusers' on tiny random weights (dev and schnell configs): loading a
diffusers-saved folder, the forward to 1e-5, and saving a folder diffusers reads."""

import pytest
import torch
from tiny_flux import tiny_transformer

from diffblocks.components import FluxTransformer2DModel
from diffblocks.components.errors import ModelInputError, WeightsMismatchError
from diffblocks.components.models.flux_embeddings import rope_frequencies

TOL = 1e-5
TOKENS, TEXT = 16, 7


def inputs(dev: bool, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    ids = torch.zeros(4, 4, 3)
    ids[..., 1] += torch.arange(4)[:, None]
    ids[..., 2] += torch.arange(4)[None, :]
    return dict(
        hidden_states=torch.randn(batch, TOKENS, 64, generator=g),
        encoder_hidden_states=torch.randn(batch, TEXT, 32, generator=g),
        pooled_projections=torch.randn(batch, 32, generator=g),
        timestep=torch.tensor([0.7, 0.25])[:batch], img_ids=ids.reshape(-1, 3), txt_ids=torch.zeros(TEXT, 3),
        guidance=torch.full((batch,), 3.5) if dev else None,
    )


@pytest.fixture(scope="module", params=[True, False], ids=["dev", "schnell"])
def saved(request, tmp_path_factory):
    torch.manual_seed(0)
    reference = tiny_transformer(dev=request.param)
    path = tmp_path_factory.mktemp("flux_transformer")
    reference.save_pretrained(path)
    return request.param, reference, path


def test_loads_a_diffusers_folder_and_matches_the_forward(saved):
    dev, reference, path = saved
    model = FluxTransformer2DModel.from_pretrained(path)  # raises on any missing or unexpected key
    assert model.config.guidance_embeds is dev and hasattr(model.time_text_embed, "guidance_embedder") is dev
    assert not any(p.is_meta for p in model.parameters()) and not model.training
    with torch.no_grad():
        expected = reference(**inputs(dev)).sample
        got = model(**inputs(dev)).sample
    assert got.shape == expected.shape == (2, TOKENS, 64)
    assert (got - expected).abs().max().item() <= TOL


def test_saves_a_folder_diffusers_loads(saved, tmp_path):
    dev, reference, path = saved
    FluxTransformer2DModel.from_pretrained(path).save_pretrained(tmp_path)
    from diffusers import FluxTransformer2DModel as Reference

    again = Reference.from_pretrained(tmp_path)
    with torch.no_grad():
        assert torch.equal(again(**inputs(dev)).sample, reference(**inputs(dev)).sample)


def test_batched_ids_and_controlnet_residuals_match(saved):
    dev, reference, path = saved
    model = FluxTransformer2DModel.from_pretrained(path)
    g = torch.Generator().manual_seed(2)
    extra = dict(controlnet_block_samples=[torch.randn(2, TOKENS, 32, generator=g)],
                 controlnet_single_block_samples=[torch.randn(2, TOKENS, 32, generator=g)])
    batched = inputs(dev)
    batched["img_ids"] = batched["img_ids"][None].repeat(2, 1, 1)  # the deprecated (batch, tokens, 3) form
    with torch.no_grad():
        expected = reference(**inputs(dev), **extra).sample
        got = model(**batched, **extra).sample
    assert (got - expected).abs().max().item() <= TOL


def test_a_dev_model_without_guidance_names_the_input(saved):
    dev, _, path = saved
    if not dev:
        pytest.skip("schnell has no guidance embedding")
    model = FluxTransformer2DModel.from_pretrained(path)
    with pytest.raises(ModelInputError, match="guidance"):
        model(**{**inputs(dev), "guidance": None})


def test_a_folder_of_another_config_is_refused_naming_keys(saved, tmp_path):
    dev, _, _ = saved
    tiny_transformer(dev=not dev).save_pretrained(tmp_path)
    config = FluxTransformer2DModel.load_config(tmp_path)
    with pytest.raises(WeightsMismatchError, match="guidance_embedder"):
        model = FluxTransformer2DModel.from_config({**config, "guidance_embeds": dev})
        from diffblocks.components.models.weights import find_weight_files, read_weights

        model.load_weights(read_weights(find_weight_files(tmp_path)))


def test_rope_tables_match_diffusers():
    from diffusers.models.transformers.transformer_flux import FluxPosEmbed

    ids = torch.tensor([[0.0, 3.0, 5.0], [0.0, 120.0, 7.0], [0.0, 0.0, 0.0]])
    expected = FluxPosEmbed(theta=10000, axes_dim=[4, 6, 6])(ids)
    got = rope_frequencies(ids, [4, 6, 6])
    assert all(torch.equal(a, b) for a, b in zip(got, expected))
    with pytest.raises(ModelInputError, match="ids"):
        rope_frequencies(ids[:, :2], [4, 6, 6])
