"""Which modules and rows a perturbation edits, and how.

- Layer skip on several blocks and with dropout, against diffusers' layer-skip hook on the tiny UNet
  (separate single-branch forward; dropout compared under the same seed). Tolerance 1e-5.
- A toy model whose attention calls ``F.scaled_dot_product_attention`` with keyword arguments, takes its input
  as ``x=``, and whose block list sits under a module called with ``hidden_states=``: identity attention, query
  blur and attention skip against the same toy computing them itself (flags on the module).
- Which feed-forward modules a block has, what the errors name, and the order of the hooks.
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from diffusers.hooks import LayerSkipConfig as RefLayerSkipConfig
from diffusers.hooks.layer_skip import _apply_layer_skip_hook
from scipy.ndimage import gaussian_filter

import diffblocks.guiders as gd
from diffblocks.guiders import hooks
from diffblocks.modular_pipelines.errors import GuiderError

TOL = dict(atol=1e-5, rtol=1e-5)
MID = "mid_block.attentions.0.transformer_blocks"


def _forward(unet, inputs, embeds):
    with torch.no_grad():
        return unet(
            torch.cat([inputs["latents"]] * len(embeds)), inputs["timestep"], encoder_hidden_states=torch.cat(embeds)
        ).sample


def _clean(model):
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks, type(module).__name__
    assert torch._C._len_torch_function_stack() == 0


# --- layer skip on the tiny UNet against diffusers ------------------------------------------------------


@pytest.mark.parametrize("skip_attention,skip_ff", [(True, True), (True, False), (False, True)])
def test_skip_layer_on_every_block_matches_diffusers(unet, unet_inputs, skip_attention, skip_ff):
    # -2 is the first of the 2 blocks: both blocks are skipped, in one plan
    config = gd.LayerSkipConfig([-2, 1], fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff)
    cond = unet_inputs["cond"]
    with hooks.apply_perturbations(unet, [(slice(1, 2), config)]):
        ours = _forward(unet, unet_inputs, [cond, cond])
    _clean(unet)
    ref = copy.deepcopy(unet)
    _apply_layer_skip_hook(ref, RefLayerSkipConfig([0, 1], fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff))
    want = _forward(ref, unet_inputs, [cond])
    torch.testing.assert_close(ours[1:], want, **TOL)
    torch.testing.assert_close(ours[:1], _forward(unet, unet_inputs, [cond]), **TOL)
    # skipping both blocks is not skipping one of them
    one = copy.deepcopy(unet)
    _apply_layer_skip_hook(one, RefLayerSkipConfig([1], fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff))
    assert (_forward(one, unet_inputs, [cond]) - want).abs().max() > 1e-4


@pytest.mark.parametrize("skip_attention,skip_ff", [(True, False), (False, True)])
def test_dropout_matches_diffusers_under_the_same_seed(unet, unet_inputs, skip_attention, skip_ff):
    config = dict(fqn=MID, skip_attention=skip_attention, skip_ff=skip_ff, dropout=0.2)
    cond = unet_inputs["cond"]
    torch.manual_seed(7)
    with hooks.apply_perturbations(unet, [(slice(0, 1), gd.LayerSkipConfig(0, **config))]):
        ours = _forward(unet, unet_inputs, [cond])
    ref = copy.deepcopy(unet)
    _apply_layer_skip_hook(ref, RefLayerSkipConfig([0], **config))
    torch.manual_seed(7)
    want = _forward(ref, unet_inputs, [cond])
    torch.testing.assert_close(ours, want, **TOL)
    assert (ours - _forward(unet, unet_inputs, [cond])).abs().max() > 1e-4


def test_block_dropout_drops_the_block_output_once(unet, unet_inputs):
    """With both skips and dropout < 1 the block runs and F.dropout(output, p) is applied to its rows.

    (diffusers' hook also drops the block's feed-forward output inside it, so it is no reference here.)
    """
    cond = unet_inputs["cond"]
    config = gd.LayerSkipConfig(0, fqn=MID, dropout=0.2)
    torch.manual_seed(7)
    with hooks.apply_perturbations(unet, [(slice(0, 1), config)]):
        ours = _forward(unet, unet_inputs, [cond])
    ref = copy.deepcopy(unet)
    ref.get_submodule(f"{MID}.0").register_forward_hook(lambda m, a, out: F.dropout(out, p=0.2, training=True))
    torch.manual_seed(7)
    torch.testing.assert_close(ours, _forward(ref, unet_inputs, [cond]), **TOL)


# --- a toy model: keyword SDPA, x= input, block list under a module called with hidden_states= -----------

HEADS, DIM, H, W = 2, 8, 4, 6


class _Attention(torch.nn.Module):
    is_cross_attention = False

    def __init__(self):
        super().__init__()
        self.to_q, self.to_k, self.to_v = (torch.nn.Linear(DIM, DIM) for _ in range(3))
        # how the reference copy computes the perturbations itself
        self.blur_sigma = None
        self.identity = False
        self.skip = False

    def forward(self, x):
        if self.skip:
            return x
        b, n, _ = x.shape
        q, k, v = (lin(x).view(b, n, HEADS, DIM // HEADS).transpose(1, 2) for lin in (self.to_q, self.to_k, self.to_v))
        if self.blur_sigma is not None:  # over the (H, W) grid, per channel; kernel 5 (7 capped by H=4)
            grid = q.reshape(b, HEADS, H, W, DIM // HEADS)
            q = gaussian_filter(grid.double().numpy(), sigma=(0, 0, self.blur_sigma, self.blur_sigma, 0),
                                mode="mirror", truncate=2 / self.blur_sigma)
            q = torch.from_numpy(q).float().reshape(b, HEADS, n, DIM // HEADS)
        out = v if self.identity else F.scaled_dot_product_attention(query=q, key=k, value=v)
        return out.transpose(1, 2).reshape(b, n, DIM)


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.attn1 = _Attention()
        self.ff = torch.nn.Sequential(torch.nn.Linear(DIM, DIM), torch.nn.GELU(), torch.nn.Linear(DIM, DIM))

    def forward(self, hidden_states):
        h = hidden_states + self.attn1(x=hidden_states)
        return h + self.ff(h)


class _Stage(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.blocks = torch.nn.ModuleList([_Block(), _Block()])

    def forward(self, hidden_states):  # (B, C, H, W) -> tokens, row-major -> (B, C, H, W)
        b, c, h, w = hidden_states.shape
        tokens = hidden_states.flatten(2).transpose(1, 2)
        for block in self.blocks:
            tokens = block(tokens)
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class _Toy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.stage = _Stage()

    def forward(self, x):
        return self.stage(hidden_states=x)


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return _Toy().eval()


@pytest.fixture(scope="module")
def toy_input():
    return torch.randn(1, DIM, H, W, generator=torch.Generator().manual_seed(5))


def _toy_reference(toy, x, **flags):
    ref = copy.deepcopy(toy)
    for key, value in flags.items():
        setattr(ref.stage.blocks[1].attn1, key, value)
    with torch.no_grad():
        return ref(x)


PERTURBATIONS = {
    "identity attention": (
        gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=False, skip_attention_scores=True, skip_ff=False),
        {"identity": True},
    ),
    "finite query blur": (gd.SmoothedEnergyGuidanceConfig(1, fqn="stage.blocks", blur_sigma=1.0), {"blur_sigma": 1.0}),
    "attention skip": (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=True, skip_ff=False), {"skip": True}),
}


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_toy_with_keyword_calls_is_perturbed_on_its_rows(toy, toy_input, name):
    config, flags = PERTURBATIONS[name]
    with torch.no_grad():
        plain = toy(toy_input)
        with hooks.apply_perturbations(toy, [(slice(1, 2), config)]):
            out = toy(torch.cat([toy_input, toy_input]))
    _clean(toy)
    want = _toy_reference(toy, toy_input, **flags)
    torch.testing.assert_close(out[:1], plain, **TOL)
    torch.testing.assert_close(out[1:], want, **TOL)
    assert (want - plain).abs().max() > 1e-3


def test_a_user_hook_on_a_perturbed_module_runs_after_the_mode_is_left(toy, toy_input):
    """Our post-hook is the module's first: a mode entered for the forward does not outlive it."""
    seen = []
    attn = toy.stage.blocks[1].attn1
    handle = attn.register_forward_hook(lambda *_: seen.append(torch._C._len_torch_function_stack()))
    try:
        config, _ = PERTURBATIONS["identity attention"]
        with torch.no_grad(), hooks.apply_perturbations(toy, [(slice(0, 1), config)]):
            toy(toy_input)
    finally:
        handle.remove()
    assert seen == [0]
    _clean(toy)


# --- what the errors name ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config,where", [
    (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=False, skip_attention_scores=True, skip_ff=False),
     "stage.blocks.1.attn1"),
    (gd.SmoothedEnergyGuidanceConfig(1, fqn="stage.blocks", blur_sigma=1.0), "stage.blocks.1.attn1"),
    (gd.SmoothedEnergyGuidanceConfig(1, fqn="stage.blocks"), "stage.blocks.1.attn1"),
    (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=True, skip_ff=False), "stage.blocks.1.attn1"),
    (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=False, skip_ff=True), "stage.blocks.1.ff"),
    (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=True, skip_ff=True), "stage.blocks.1"),
    (gd.LayerSkipConfig(1, fqn="stage.blocks", skip_attention=True, skip_ff=False, dropout=0.5), "stage.blocks.1.attn1"),
])
def test_a_batch_other_than_the_plans_names_the_module(toy, toy_input, config, where):
    with pytest.raises(GuiderError, match=rf"^'{where}' sees a batch of 1 rows but the branches' slices cover 2;"):
        with torch.no_grad(), hooks.apply_perturbations(toy, [(slice(1, 2), config)]):
            toy(toy_input)
    _clean(toy)


class _Widening(torch.nn.Linear):
    is_cross_attention = False


def test_skipping_a_module_whose_output_is_not_its_input_shape_is_an_error():
    model = torch.nn.Module()
    block = torch.nn.Module()
    block.attn1 = _Widening(4, 6)
    model.blocks = torch.nn.ModuleList([block])
    with pytest.raises(GuiderError, match=r"^cannot skip 'blocks.0.attn1': its output \(2, 3, 6\) does not match any input$"):
        with hooks.apply_perturbations(model, [(slice(0, 1), gd.LayerSkipConfig(0, fqn="blocks", skip_ff=False))], batch=2):
            block.attn1(torch.randn(2, 3, 4))
    _clean(model)


def test_hidden_states_input_found_by_keyword_or_position_else_an_error():
    a, b = torch.zeros(1), torch.ones(1)
    assert hooks._input("hidden_states", (a,), {"hidden_states": b}) is b
    assert hooks._input("hidden_states", (a,), {"x": b}) is b
    assert hooks._input("hidden_states", (a,), {"inputs": b}) is a
    assert hooks._input("encoder_hidden_states", (a,), {}) is None  # only hidden_states is taken by position
    with pytest.raises(GuiderError, match="cannot find the hidden_states input of a skipped module"):
        hooks._skip_sources(torch.nn.Identity(), b, (), {"inputs": b}, "m")


class _Joint(torch.nn.Module):
    """Two streams of one shape in, returned text first (as FLUX's blocks return them)."""

    def forward(self, hidden_states, encoder_hidden_states):
        return encoder_hidden_states + 1, hidden_states + 1


class _DeclaredJoint(_Joint):
    output_streams = ("encoder_hidden_states", "hidden_states")


def test_a_skipped_joint_block_passes_each_stream_its_own_input_by_its_declared_order_never_by_a_guess():
    image, text = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    out = _DeclaredJoint()(image, text)
    skipped = hooks._skip_rows(_DeclaredJoint(), out, (), {"hidden_states": image, "encoder_hidden_states": text},
                               slice(1, 2), 2, 1.0, "blocks.0")
    assert torch.equal(skipped[0][1], text[1]) and torch.equal(skipped[1][1], image[1])  # the skipped row
    assert torch.equal(skipped[0][0], out[0][0]) and torch.equal(skipped[1][0], out[1][0])  # the others kept
    with pytest.raises(GuiderError, match=r"^cannot skip 'blocks.0': its outputs and its hidden_states and "
                                          r"encoder_hidden_states inputs all have the shape \(2, 3, 4\); _Joint needs "
                                          r"output_streams"):
        hooks._skip_rows(_Joint(), out, (), {"hidden_states": image, "encoder_hidden_states": text},
                         slice(1, 2), 2, 1.0, "blocks.0")
    with pytest.raises(GuiderError, match="^cannot skip 'blocks.0': it was called without its encoder_hidden_states"):
        hooks._skip_rows(_DeclaredJoint(), out, (image, text), {}, slice(1, 2), 2, 1.0, "blocks.0")


def test_attention_without_sdpa_names_the_module(unet, unet_inputs):
    from diffusers.models.attention_processor import AttnProcessor

    model = copy.deepcopy(unet)
    model.mid_block.attentions[0].transformer_blocks[1].attn1.set_processor(AttnProcessor())
    config = gd.LayerSkipConfig(1, fqn=MID, skip_attention=False, skip_attention_scores=True, skip_ff=False)
    with pytest.raises(GuiderError, match=rf"^'{MID}.1.attn1' \(Attention\) did not call F.scaled_dot_product_attention"):
        with hooks.apply_perturbations(model, [(slice(0, 1), config)]):
            _forward(model, unet_inputs, [unet_inputs["cond"]])
    _clean(model)


# --- which modules are feed-forwards ----------------------------------------------------------------------


class FeedForward(torch.nn.Module):  # matched by class name, as diffusers' FeedForward
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 2)


def test_feed_forwards_are_found_by_class_or_name_outermost_only():
    block = torch.nn.Module()
    block.attn1 = torch.nn.Linear(2, 2)
    block.ff = torch.nn.Sequential(torch.nn.Linear(2, 2))  # named ff: found ...
    block.ff.add_module("ff", FeedForward())               # ... and what it holds is not skipped again
    block.mlp = FeedForward()                                # by class
    block.proj = torch.nn.Module()
    block.proj.inner = torch.nn.Module()
    block.proj.inner.ff_context = torch.nn.Linear(2, 2)     # by name, however deep
    block.proj.inner.ffn = torch.nn.Linear(2, 2)            # neither
    found = hooks.feed_forwards("blocks.3", block)
    assert [(name, module) for name, module in found] == [
        ("blocks.3.ff", block.ff), ("blocks.3.mlp", block.mlp), ("blocks.3.proj.inner.ff_context", block.proj.inner.ff_context),
    ]
