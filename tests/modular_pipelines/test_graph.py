"""The data-flow graph (networkx), validate() and the mermaid rendering, over several tree shapes."""

import importlib
import importlib.util
import itertools
import re
from pathlib import Path

import networkx as nx
import pytest
from toy_blocks import (
    AutoImageBlocks,
    ImageEncoderBlock,
    InputBlock,
    LoopBlock,
    LoopWrapper,
    TwiceLoop,
    make_block,
    make_loop_step,
    make_step,
)

from diffblocks.modular_pipelines import AutoPipelineBlocks, InputParam, InsertableDict, SequentialPipelineBlocks
from diffblocks.modular_pipelines.errors import MissingInputError, PipelineValidationError
from diffblocks.modular_pipelines.graph import SOURCE

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


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


def edges(graph):
    return {(a, b): names for a, b, names in graph.edges(data="names")}


def auto_tree(triggers, txt_outputs):
    """prep makes latents; an Auto block's image branch makes latents and image_latents, its other branch
    ``txt_outputs``; ``use`` reads all three."""
    auto = AutoPipelineBlocks.from_blocks_dict({
        "img": make_block("ImgEnc", inputs=["image"], outputs=["latents", "image_latents"]),
        "txt": make_block("TxtEnc", outputs=txt_outputs),
    }, trigger_inputs=triggers)
    return SequentialPipelineBlocks.from_blocks_dict({
        "prep": make_block("Prep", outputs=["latents"]), "enc": auto,
        "use": make_block("Use", inputs=["latents", "image_latents", "text"]),
    })


def test_an_output_only_some_branches_make_comes_from_them_or_from_before():
    graph = auto_tree(["image", None], ["text"]).graph()
    assert edges(graph) == {
        (SOURCE, "enc.img"): ["image"],
        ("enc.img", "use"): ["latents", "image_latents"],
        ("prep", "use"): ["latents"],  # the text branch leaves prep's latents
        (SOURCE, "use"): ["image_latents", "text"],  # or the user's, when the branch that makes them does not run
        ("enc.txt", "use"): ["text"],
    }
    assert graph.nodes["enc.img"] == {"kind": "block", "cls": "ImgEnc"} and graph.nodes[SOURCE]["kind"] == "inputs"


def test_an_output_every_branch_makes_hides_earlier_producers_unless_the_block_may_be_skipped():
    always = auto_tree(["image", None], ["latents"]).graph()
    assert edges(always)[("enc.img", "use")] == ["latents", "image_latents"]
    assert edges(always)[("enc.txt", "use")] == ["latents"]
    assert ("prep", "use") not in edges(always)
    maybe = auto_tree(["image", "mask"], ["latents"]).graph()  # no default branch: may run neither
    assert edges(maybe)[("prep", "use")] == ["latents"]


def test_mermaid_text_of_a_small_tree():
    assert sequential().to_mermaid().splitlines() == [
        "flowchart TD",
        "    n0([inputs])",
        '    n1["input<br/>InputBlock"]',
        '    n2["image_encoder<br/>ImageEncoderBlock"]',
        "    n0 -->|prompt, num_images_per_prompt| n1",
        "    n0 -->|image| n2",
        "    n1 -->|batch_size| n2",
    ]
    loop = LoopWrapper.from_blocks_dict({"a": LoopBlock}).to_mermaid().splitlines()
    assert loop[2] == '    n1{{"LoopWrapper<br/>LoopWrapper"}}' and loop[3] == '    n2["a<br/>LoopBlock"]'


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
    # 'latents' is a pipeline input (required), so the tree runs when the user gives it: only the given
    # inputs below make its late production a problem
    with pytest.raises(PipelineValidationError) as err:
        blocks.validate(inputs=[])
    text = str(err.value)
    assert text.startswith("3 problems:")
    assert "'latents' is required by 'needs' (Needs) but no block before it produces it (it is made by 'makes'" in text
    assert "auto block 'encode': branches output different names; 'image_latents' is required by 'use' but branch txt" in text
    assert "is used at more than one place" in text
    with pytest.raises(PipelineValidationError) as err:
        blocks.validate()
    assert str(err.value).startswith("2 problems:") and "'latents'" not in str(err.value)
    assert "branch txt does not output it (when 'image' is not given)" in str(err.value)


def test_validate_with_given_inputs_reports_what_nobody_gives():
    blocks = sequential()
    blocks.validate()  # nothing required
    Needs = make_block("Needs", inputs=[InputParam("prompt", required=True)])
    with pytest.raises(PipelineValidationError, match="'prompt' is required by 'needs'.*not given"):
        SequentialPipelineBlocks.from_blocks_dict({"needs": Needs}).validate(inputs=["seed"])
    SequentialPipelineBlocks.from_blocks_dict({"needs": Needs}).validate(inputs=["prompt"])


# --- validate() is exact: a table of trees that run and trees that cannot ------------------------------

def seq(**blocks):
    return SequentialPipelineBlocks.from_blocks_dict(blocks)


def auto(branches):
    """``{name: (block, trigger)}`` -> an Auto block."""
    return AutoPipelineBlocks.from_blocks_dict({n: b for n, (b, _) in branches.items()},
                                               trigger_inputs=[t for _, t in branches.values()])


def block_tour_blocks():
    spec = importlib.util.spec_from_file_location("block_tour", EXAMPLES / "block_tour.py")
    tour = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tour)
    preset = InsertableDict([("tokenize", tour.Tokenize), ("join", tour.Join)])
    preset.insert("shout", tour.MaybeShout, 1)
    return SequentialPipelineBlocks.from_blocks_dict(preset)


def encoder_and_latents(inpaint_encoder_trigger="mask_image"):
    """The SD AUTO_BLOCKS pattern: an image encoder that may be skipped, then latents chosen by the same triggers."""
    return seq(
        encode=auto({
            "inpaint": (make_step("InpaintEnc", ["image", "mask_image"], outputs=["image_latents", "mask"]),
                        inpaint_encoder_trigger),
            "img2img": (make_step("ImgEnc", ["image"], outputs=["image_latents"]), "image"),
        }),
        prepare=auto({
            "inpaint": (make_step("InpaintLat", ["image_latents", "mask"], outputs=["latents"]), "mask_image"),
            "img2img": (make_step("ImgLat", ["image_latents"], outputs=["latents"]), "image"),
            "text2img": (make_step("TxtLat", outputs=["latents"]), None),
        }),
        decode=make_step("Decode", ["latents"], outputs=["images"]),
    )


def nested_autos(plain_outputs):
    inner = auto({"mask": (make_step("Masked", ["lat", "mask"], outputs=["lat2"]), "mask"),
                  "plain": (make_step("Plain", ["lat"], outputs=plain_outputs), None)})
    outer = auto({"img": (seq(enc=make_step("Enc", ["image"], outputs=["lat"]), inner=inner), "image"),
                  "txt": (make_step("Txt", outputs=["lat2"]), None)})
    return seq(outer=outer, use=make_step("Use", ["lat2"], outputs=["out"]))


def loop_with_auto(plain_outputs):
    body = {"pick": auto({"masked": (make_loop_step("MaskStep", ["mask"], ["mask_lat"]), "mask"),
                          "plain": (make_loop_step("PlainStep", [], plain_outputs), None)}),
            "blend": make_loop_step("Blend", ["mask_lat"], ["lat"])}
    return seq(loop=TwiceLoop.from_blocks_dict(body), decode=make_step("Decode", ["lat"], outputs=["images"]))


RUNS = {
    "sequential": lambda: seq(a=make_step("A", ["prompt"], outputs=["x"]), b=make_step("B", ["x"], outputs=["y"])),
    "block_tour": block_tour_blocks,
    "skippable_auto_after_a_producer": lambda: seq(
        p=make_step("P", outputs=["lat"]), maybe=auto({"img": (make_step("Img", ["image"], outputs=["lat"]), "image")}),
        c=make_step("C", ["lat"])),
    "every_branch_outputs_it": lambda: seq(
        enc=auto({"img": (make_step("Img", outputs=["lat"]), "image"),
                  "txt": (make_step("Txt", outputs=["lat"]), None)}),
        c=make_step("C", ["lat"])),
    "same_triggers_twice": encoder_and_latents,
    "branch_requires_its_trigger": lambda: auto({"inpaint": (make_step("Inpaint", ["mask_image"]), "mask_image")}),
    "trigger_made_earlier": lambda: seq(
        p=make_step("P", outputs=["flag"]), on=auto({"on": (make_step("On", ["flag"], outputs=["out"]), "flag")}),
        c=make_step("C", ["out"])),
    "trigger_set_by_an_earlier_default": lambda: seq(
        a=make_step("A", defaults={"k": 3}), on=auto({"on": (make_step("On", ["k"], outputs=["out"]), "k")}),
        c=make_step("C", ["out"])),
    "nested_autos": lambda: nested_autos(plain_outputs=["lat2"]),
    "loop": lambda: seq(
        p=make_step("P", outputs=["lat"]),
        loop=TwiceLoop.from_blocks_dict({"scale": make_loop_step("Scale", ["lat"], ["scaled"]),
                                         "step": make_loop_step("Step", ["scaled"], ["lat"])}),
        decode=make_step("Decode", ["lat"], outputs=["images"])),
    "loop_with_auto": lambda: loop_with_auto(plain_outputs=["mask_lat"]),
}

# each: (tree, substrings of what validate() says); the names it reports are the ones real runs miss
CANNOT_RUN = {
    "default_branch_lacks_an_output": (
        lambda: seq(enc=auto({"img": (make_step("Img", outputs=["lat"]), "image"), "txt": (make_step("Txt"), None)}),
                    c=make_step("C", ["lat"])),
        ["auto block 'enc'", "'lat' is required by 'c' but branch txt does not output it (when 'image' is not given)"]),
    "skippable_auto_without_earlier_producer": (
        lambda: seq(maybe=auto({"shout": (make_step("Shout", outputs=["tokens"]), "loud")}),
                    c=make_step("C", ["tokens"])),
        ["auto block 'maybe'", "'tokens' is required by 'c' but it runs no branch (when 'loud' is not given)"]),
    "same_triggers_mismatched": (
        lambda: encoder_and_latents(inpaint_encoder_trigger="image_mask"),
        ["2 problems", "auto block 'encode'",
         "'mask' is required by 'prepare.inpaint' but branch img2img does not output it (when 'image_mask' is not "
         "given and 'image' is given and 'mask_image' is given)",
         "'image_latents' is required by 'prepare.inpaint' but it runs no branch (when 'image_mask' is not given "
         "and 'image' is not given and 'mask_image' is given)"]),
    "trigger_made_by_a_skipped_branch": (
        lambda: seq(mk=auto({"mk": (make_step("Mk", outputs=["flag"]), "a")}),
                    on=auto({"on": (make_step("On", outputs=["out"]), "flag")}), c=make_step("C", ["out"])),
        ["auto block 'on'", "'out' is required by 'c' but it runs no branch (when 'a' is not given)"]),
    "nested_autos_mismatched": (
        lambda: nested_autos(plain_outputs=["x"]),
        ["auto block 'outer.img.inner'", "'lat2' is required by 'use' but branch plain does not output it",
         "(when 'image' is given and 'mask' is not given)"]),
    "loop_with_auto_mismatched": (
        lambda: loop_with_auto(plain_outputs=[]),
        ["auto block 'loop.pick'", "'mask_lat' is required by 'loop.blend' but branch plain does not output it"]),
}


def _triggers(blocks):
    autos = [b for _, b in [("", blocks), *_walk(blocks)] if isinstance(b, AutoPipelineBlocks)]
    return sorted({t for a in autos for t in a.triggers if t is not None} & set(blocks.input_names))


def _walk(blocks):
    return blocks.walk() if hasattr(blocks, "walk") else []


def run_missing(blocks, given):
    """The input a run with ``given`` (name -> non-None value) misses, or None when it runs."""
    try:
        blocks.init_pipeline()(**given)
    except MissingInputError as err:
        return re.search(r"needs the required input '([^']+)'", str(err)).group(1)
    return None


def structural_failures(blocks):
    """Run once per subset of the trigger inputs, every other input given: the inputs missed that the user
    cannot give (they are not the pipeline's inputs), and whether some run got through."""
    triggers, names = _triggers(blocks), blocks.input_names
    missed, ran = set(), False
    for k in range(len(triggers) + 1):
        for chosen in itertools.combinations(triggers, k):
            missing = run_missing(blocks, {n: n for n in names if n not in triggers or n in chosen})
            ran |= missing is None
            if missing is not None and missing not in names:
                missed.add(missing)
    return missed, ran


@pytest.mark.parametrize("shape", list(RUNS))
def test_validate_passes_trees_that_run(shape):
    blocks = RUNS[shape]()
    blocks.validate()
    missed, ran = structural_failures(blocks)
    assert missed == set() and ran


@pytest.mark.parametrize("shape", list(CANNOT_RUN))
def test_validate_reports_trees_that_cannot_run(shape):
    build, expected = CANNOT_RUN[shape]
    blocks = build()
    with pytest.raises(PipelineValidationError) as err:
        blocks.validate()
    text = str(err.value)
    for part in expected:
        assert part in text
    reported = {re.search(r"'(\w+)' is required by", p).group(1) for p in err.value.problems}
    missed, _ = structural_failures(blocks)  # each problem is real: some run misses a value nobody can give
    assert missed == reported


@pytest.mark.parametrize("given, problem", [
    (["image", "mask_image"], None),
    (["image"], None),
    ([], None),
    (["mask_image"], "'image' is required by 'encode.inpaint' (InpaintEnc) but nothing produces it and it is not given"),
])
def test_validate_with_inputs_is_one_run(given, problem):
    blocks = encoder_and_latents()
    missing = run_missing(blocks, {n: n for n in given})
    if problem is None:
        blocks.validate(inputs=given)
        assert missing is None
    else:
        with pytest.raises(PipelineValidationError) as err:
            blocks.validate(inputs=given)
        assert err.value.problems == [problem] and missing == "image"


@pytest.mark.parametrize("preset", ["stable_diffusion", "stable_diffusion_xl"])
def test_shipped_auto_blocks_validate(preset):
    module = importlib.import_module(f"diffblocks.presets.{preset}")
    for name in ("AUTO_BLOCKS", "TEXT2IMAGE_BLOCKS", "IMAGE2IMAGE_BLOCKS", "INPAINT_BLOCKS"):
        SequentialPipelineBlocks.from_blocks_dict(getattr(module, name)).validate()


# --- exact graphs and messages for the less common shapes ----------------------------------------------

def test_graph_of_a_root_leaf_kwargs_inputs_nested_sequences_and_loop_outputs():
    from diffblocks.modular_pipelines import OutputParam

    solo = make_block("Solo", inputs=[InputParam(None, kwargs_type="extra"), "x"])()
    assert list(solo.graph().nodes) == [SOURCE, "Solo"] and edges(solo.graph()) == {(SOURCE, "Solo"): ["x"]}

    class OutLoop(TwiceLoop):
        loop_intermediate_outputs = [OutputParam("lat")]

    blocks = seq(outer=seq(p=make_step("P", outputs=["lat"])),
                 loop=OutLoop.from_blocks_dict({"step": make_loop_step("Step", ["lat"], ["lat"])}),
                 use=make_step("Use", ["lat"]))
    assert edges(blocks.graph()) == {("outer.p", "loop.step"): ["lat"], ("loop", "use"): ["lat"]}
    assert list(AutoPipelineBlocks.from_blocks_dict({}, trigger_inputs=[]).graph().nodes) == [SOURCE]


def problems_of(blocks, inputs=None):
    with pytest.raises(PipelineValidationError) as err:
        blocks.validate(inputs=inputs)
    return err.value.problems


def test_problems_name_the_root_leaf_and_a_loop_by_path_and_class():
    assert problems_of(make_step("Solo", ["x"], outputs=["x"])(), inputs=[]) == [
        "'x' is required by 'Solo' (Solo) but nothing produces it and it is not given"]

    class NeedsLoop(TwiceLoop):
        loop_inputs = [InputParam("num", required=True)]

    assert problems_of(seq(loop=NeedsLoop.from_blocks_dict({"s": make_loop_step("S")})), inputs=[]) == [
        "'num' is required by 'loop' (NeedsLoop) but nothing produces it and it is not given"]


def test_each_branch_way_is_followed_and_named_by_its_path():
    lat = dict(outputs=["lat"])
    # a branch tried first that lacks the output: its way is kept after the later branches are followed
    first = seq(enc=auto({"a": (make_step("A"), "x"), "b": (make_step("B", **lat), "y"), "c": (make_step("C", **lat), None)}),
                use=make_step("Use", ["lat"]))
    assert problems_of(first) == ["auto block 'enc': branches output different names; 'lat' is required by 'use' but "
                                  "branch a does not output it (when 'x' is given)"]
    # a default branch listed first still runs only when no trigger is given
    default_first = seq(enc=auto({"c": (make_step("C"), None), "b": (make_step("B", **lat), "y")}), use=make_step("Use", ["lat"]))
    assert problems_of(default_first) == ["auto block 'enc': branches output different names; 'lat' is required by 'use' "
                                          "but branch c does not output it (when 'y' is not given)"]
    # a problem inside the default branch names it by its full path
    in_default = seq(enc=auto({"b": (make_step("B"), "y"), "c": (make_step("C", ["q"]), None)}))
    assert problems_of(in_default, inputs=[]) == ["'q' is required by 'enc.c' (C) but nothing produces it and it is not given"]


def test_a_trigger_set_or_decided_earlier_decides_the_later_auto_block():
    made_earlier = seq(p=make_step("P", outputs=["flag"]), on=auto({"on": (make_step("On"), "flag")}), c=make_step("C", ["out"]))
    assert problems_of(made_earlier, inputs=[]) == ["'out' is required by 'c' (C) but nothing produces it and it is not given"]
    decided_earlier = seq(a=auto({"x": (make_step("X"), "t")}), b=auto({"y": (make_step("Y", outputs=["out"]), "t")}),
                          c=make_step("C", ["out"]))
    assert problems_of(decided_earlier) == ["auto block 'b': branches output different names; 'out' is required by 'c' "
                                            "but it runs no branch (when 't' is not given)"]


def test_the_auto_block_is_blamed_only_when_another_branch_outputs_the_name_and_the_consumer_is_outside_the_branch():
    inside = seq(enc=auto({"img": (seq(use=make_step("Use", ["lat"])), "image"), "txt": (make_step("Txt", outputs=["lat"]), None)}))
    assert problems_of(inside, inputs=["image"]) == [
        "'lat' is required by 'enc.img.use' (Use) but no block before it produces it (it is made by 'enc.txt') and it "
        "is not given"]
    direct = seq(enc=auto({"img": (make_step("Use", ["lat"]), "image"), "txt": (make_step("Txt", outputs=["lat"]), None)}))
    assert problems_of(direct, inputs=["image"]) == [
        "'lat' is required by 'enc.img' (Use) but no block before it produces it (it is made by 'enc.txt') and it is "
        "not given"]
    no_branch_outputs_it = seq(maybe=auto({"x": (make_step("X"), "t")}), c=make_step("C", ["lat"]))
    assert problems_of(no_branch_outputs_it, inputs=[]) == [
        "'lat' is required by 'c' (C) but nothing produces it and it is not given"]
