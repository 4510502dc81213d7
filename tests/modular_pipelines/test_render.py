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


def test_defaults_that_depend_on_the_workflow_are_shown_per_trigger():
    from diffblocks.modular_pipelines import AutoPipelineBlocks

    A = make_block("A", inputs=[InputParam("strength", type_hint=float, default=1.0, description="how much"),
                                InputParam("image", required=True)])
    B = make_block("B", inputs=[InputParam("strength", type_hint=float, default=0.8), InputParam("image", required=True),
                                InputParam("extra", required=True)])
    auto = AutoPipelineBlocks.from_blocks_dict({"a": A, "b": B}, trigger_inputs=["mask", "image"])
    text = repr(auto)
    assert "strength (float, default 1.0 or 0.8)" in text
    assert "how much; default 1.0 when 'mask' is given, else 0.8 when 'image' is given" in text
    # required only on some ways; "required when 'image' is given" says nothing, so it is left out
    assert "image (Any, optional)" in text and "required when 'mask' is given" in text
    assert "extra (Any, optional)" in text and "required when 'image' is given" in text


def sd_and_sdxl_auto():
    from diffblocks.presets import stable_diffusion, stable_diffusion_xl

    return [(SequentialPipelineBlocks.from_blocks_dict(m.AUTO_BLOCKS), strengths)
            for m, strengths in ((stable_diffusion, ("1.0", "0.8")), (stable_diffusion_xl, ("0.9999", "0.3")))]


def test_auto_presets_show_what_applies_per_workflow():
    for blocks, (inpaint, img2img) in sd_and_sdxl_auto():
        inputs = repr(blocks).split("  Inputs:")[1].split("  Outputs:")[0]
        lines = {line.split(" (")[0].strip(): line for line in inputs.splitlines() if " (" in line}
        assert "required)" not in inputs  # text-to-image needs none of them
        assert ", optional)" in lines["image"] and "required when 'mask_image' is given" in lines["image"]
        assert f"default {inpaint} or {img2img})" in lines["strength"]
        assert f"default {inpaint} when 'mask_image' is given, else {img2img} when 'image' is given" in lines["strength"]
        assert "num_inference_steps (int > 0, default=50)" in lines["num_inference_steps"]
        doc = blocks.doc.splitlines()
        i = next(n for n, line in enumerate(doc) if line.strip().startswith("strength ("))
        assert f"else {img2img} when 'image' is given" in doc[i + 1]


def given(*names):
    return tuple((n, True) for n in names)


def varied(name, *entries, **kwargs):
    """An input declared differently per workflow (as aggregation makes them): entries (when, required, default)."""
    from diffblocks.modular_pipelines.composite import VARIANTS, Variant

    return InputParam(name, metadata={VARIANTS: tuple(Variant(*e) for e in entries)}, **kwargs)


def documented():
    from diffblocks.modular_pipelines import ModularPipelineBlocks
    from diffblocks.modular_pipelines.params import NO_DEFAULT as NO

    class Documented(ModularPipelineBlocks):
        description = "first line\nsecond line"
        expected_components = [ComponentSpec("unet", type_hint=dict, description="the denoiser"),
                               ComponentSpec("feature_extractor", type_hint=list, default_creation_method="from_config")]
        expected_configs = [ConfigSpec("force_zeros", True, description="zeros for an empty prompt"), ConfigSpec("size", 64)]
        inputs = [
            InputParam("prompt", type_hint=str, required=True, description="the prompt"),
            varied("mixed", (given("a"), True, NO), (given("b"), False, 0.8)),  # one default: still "optional"
            varied("grouped", (given("a"), True, NO), (given("e"), True, NO), (given("b"), False, 1.0),
                   (given("c"), False, 1.0), ((), False, 0.5), description="how much"),
            varied("both", (given("a", "b"), False, 1.0), (given("c"), False, 0.5)),
            varied("itself", (given("itself"), True, NO), (given("b"), False, 0.8)),  # given where it is required
            varied("always", (given("a"), True, NO), (given("b"), True, NO), required=True),  # the flag says it all
        ]
        intermediate_outputs = [OutputParam("embeds", type_hint=list, description="text embeddings"), OutputParam("mask")]

    return Documented()


INPUT_HEADS = [
    ("prompt (str, required)", "the prompt"),
    ("mixed (Any, optional)", "required when 'a' is given, else default 0.8 when 'b' is given"),
    ("grouped (Any, default 1.0 or 0.5)", "how much; required when 'a' or 'e' is given, else default 1.0 when 'b' or "
                                          "'c' is given, else 0.5 otherwise"),
    ("both (Any, default 1.0 or 0.5)", "default 1.0 when 'a' and 'b' are given, else 0.5 when 'c' is given"),
    ("itself (Any, optional)", "default 0.8 when 'b' is given"),
    ("always (Any, required)", ""),
]


def test_repr_is_exact_section_by_section():
    inputs = [f"      {head.ljust(33)}  {desc}".rstrip() for head, desc in INPUT_HEADS]
    assert repr(documented()).splitlines() == [
        "Documented(",
        "  Description:", "      first line", "      second line",
        "  Components:",
        "      unet (dict)                            the denoiser",
        "      feature_extractor (list, from_config)",
        "  Configs:", "      force_zeros = True  zeros for an empty prompt", "      size = 64",
        "  Inputs:", *inputs,
        "  Outputs:", "      embeds (list)  text embeddings", "      mask (Any)",
        ")",
    ]


def test_doc_is_exact_with_each_description_below_its_entry():
    inputs = [line for head, desc in INPUT_HEADS for line in ([f"    {head}", f"        {desc}"] if desc else [f"    {head}"])]
    assert documented().doc.splitlines() == [
        "class Documented", "",
        "Description:", "    first line", "    second line",
        "Components:", "    unet (dict)", "        the denoiser", "    feature_extractor (list, from_config)",
        "Configs:", "    force_zeros = True", "        zeros for an empty prompt", "    size = 64",
        "Inputs:", *inputs,
        "Outputs:", "    embeds (list)", "        text embeddings", "    mask (Any)",
    ]


def test_nested_sub_blocks_are_indented_one_level_deeper():
    blocks = SequentialPipelineBlocks.from_blocks_dict({"loop": LoopWrapper.from_blocks_dict({"b": LoopBlock})})
    lines = repr(blocks).splitlines()
    i = lines.index("  Sub-Blocks:")
    assert lines[i + 1:i + 3] == ["      [0] loop (LoopWrapper)", "          [0] b (LoopBlock)"]


def test_pipeline_repr_shows_each_component_state_and_source(tmp_path):
    from toy_components import UsesScale, write_modular_index, write_scale_repo

    weights = write_scale_repo(tmp_path / "weights", 3.0)
    index = {"scale": [None, None, {"repo": str(weights), "subfolder": "scale", "variant": None, "revision": None}]}
    pipe = UsesScale().init_pipeline(write_modular_index(tmp_path / "modular", index))
    load_id = f"{tmp_path / 'weights'}|scale|null|null"
    assert repr(pipe).splitlines() == ["ModularPipeline(blocks=UsesScale)", "  Components:",
                                       f"    scale: not loaded  [{load_id}]", "    offset: Scale  [from_config]"]
    pipe.load_components()
    assert f"    scale: Scale  [{load_id}]" in repr(pipe).splitlines()
