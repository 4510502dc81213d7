"""Prompts files, seeds and the manifest that lets a batch run resume: no model, no processes."""

import json

import pytest

from diffblocks.components.errors import BatchError
from diffblocks.distributed.manifest import (
    BatchItem, PartWriter, check_inputs, done_entries, merge_manifest, read_entries, read_items, sha256_of,
)


def test_text_file_one_prompt_a_line_blank_lines_skipped_seed_is_base_plus_index(tmp_path):
    path = tmp_path / "p.txt"
    path.write_text("a seven\n\n  a three  \n\na one\n")
    items = read_items(path, base_seed=100, defaults={"num_inference_steps": 2})
    assert [(i.index, i.prompt, i.seed, i.line) for i in items] == [(0, "a seven", 100, 1), (1, "a three", 101, 3),
                                                                      (2, "a one", 102, 5)]
    assert items[2].file == "000002.png" and items[0].inputs == {"num_inference_steps": 2}


def test_jsonl_line_inputs_override_the_defaults(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "a seven", "num_inference_steps": 5}\n\n{"prompt": "a one", "height": 16}\n')
    items = read_items(path, defaults={"num_inference_steps": 2})
    assert items[0].inputs == {"num_inference_steps": 5}
    assert items[1].inputs == {"num_inference_steps": 2, "height": 16} and items[1].line == 3


@pytest.mark.parametrize("line, message", [
    ("not json", "line 2: not a JSON object"),
    ('["a list"]', "line 2: expected a JSON object, got list"),
    ('{"steps": 3}', "line 2: needs a \"prompt\" string"),
    ('{"prompt": "x", "generator": 1}', "'generator' is set by diffblocks batch"),
])
def test_bad_jsonl_lines_are_named_by_line(tmp_path, line, message):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(BatchError) as err:
        read_items(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_empty_or_missing_prompts_file(tmp_path):
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(BatchError, match="holds no prompts"):
        read_items(tmp_path / "empty.txt")
    with pytest.raises(BatchError, match="cannot read the prompts file"):
        read_items(tmp_path / "missing.txt")


def test_unknown_input_names_the_line_and_the_closest_input(tmp_path):
    items = [BatchItem(0, "a", {}, line=1), BatchItem(1, "b", {"num_inference_step": 2}, line=4)]
    with pytest.raises(BatchError) as err:
        check_inputs(items, ["prompt", "num_inference_steps", "height"], "p.jsonl")
    assert "p.jsonl, line 4: 'num_inference_step' (did you mean num_inference_steps?)" in str(err.value)


def _written(out_dir, item, data=b"png bytes", rank=0):
    (out_dir / item.file).write_bytes(data)
    return {"item": item.index, "prompt": item.prompt, "inputs": item.inputs, "seed": item.seed, "file": item.file,
            "sha256": sha256_of(data), "rank": rank, "seconds": 0.1}


def test_done_means_entry_for_the_same_item_and_png_with_its_sha256(tmp_path):
    items = [BatchItem(i, f"p{i}", {"height": 8}, seed=i) for i in range(5)]
    writer = PartWriter(tmp_path, rank=1)
    for item in items[:4]:
        writer.append(_written(tmp_path, item))
    writer.close()
    (tmp_path / items[1].file).write_bytes(b"changed after the manifest")      # sha256 no longer matches
    (tmp_path / items[2].file).unlink()                                        # png gone
    changed = [items[0], items[1], items[2], BatchItem(3, "another prompt", {"height": 8}, seed=3), items[4]]
    assert set(done_entries(items, tmp_path)) == {0, 3}
    assert set(done_entries(changed, tmp_path)) == {0}                          # the prompt of item 3 changed


def test_a_torn_last_line_is_skipped_and_the_next_entry_starts_on_its_own_line(tmp_path):
    items = [BatchItem(i, f"p{i}", seed=i) for i in range(2)]
    part = tmp_path / "manifest.part-0.jsonl"
    part.write_text(json.dumps(_written(tmp_path, items[0])) + "\n" + '{"item": 1, "prom')   # killed mid-line
    writer = PartWriter(tmp_path, rank=0)
    writer.append(_written(tmp_path, items[1]))
    writer.close()
    assert set(read_entries(tmp_path)) == {0, 1}


def test_merge_writes_verified_entries_in_item_order_and_removes_the_parts(tmp_path):
    items = [BatchItem(i, f"p{i}", seed=i) for i in range(4)]
    for rank, chunk in ((1, items[2:]), (0, items[:2])):
        writer = PartWriter(tmp_path, rank)
        for item in chunk:
            writer.append(_written(tmp_path, item, rank=rank))
        writer.close()
    assert merge_manifest(items, tmp_path) == 4
    lines = [json.loads(line) for line in (tmp_path / "manifest.jsonl").read_text().splitlines()]
    assert [e["item"] for e in lines] == [0, 1, 2, 3] and [e["rank"] for e in lines] == [0, 0, 1, 1]
    assert not list(tmp_path.glob("manifest.part-*"))
