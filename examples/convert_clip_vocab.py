"""Convert CLIP's BPE vocabulary (``bpe_simple_vocab_16e6.txt.gz``) into a transformers ``CLIPTokenizer`` folder.

The vocabulary is OpenAI's (MIT licence); the ``open-clip-torch`` wheel ships it. Run::

    python examples/convert_clip_vocab.py                     # fetches the wheel with pip (no dependencies)
    python examples/convert_clip_vocab.py --bpe path/to/bpe_simple_vocab_16e6.txt.gz

It writes ``vocab.json``, ``merges.txt``, ``tokenizer_config.json``, ``special_tokens_map.json`` and the
licence notice to ``presets/tiny_digits/tokenizer/`` (or ``--out``). The ids are those of Stable Diffusion's
tokenizer: ``a photo of a cat`` -> 49406, 320, 1125, 539, 320, 2368, 49407.
"""

from __future__ import annotations

import argparse
import gzip
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "presets" / "tiny_digits" / "tokenizer"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
NUM_MERGES = 49152 - 256 - 2  # the merges CLIP uses (the file holds more)
BOS, EOS = "<|startoftext|>", "<|endoftext|>"

LICENSE = """\
The files vocab.json and merges.txt in this folder are converted from CLIP's byte-pair encoding vocabulary
(bpe_simple_vocab_16e6.txt.gz), as shipped in the open-clip-torch wheel, by examples/convert_clip_vocab.py.

MIT License

Copyright (c) 2021 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""


def bytes_to_unicode() -> list[str]:
    """CLIP's printable stand-ins for the 256 byte values, in id order."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def convert(bpe_path: Path) -> tuple[dict[str, int], list[str]]:
    """The vocabulary (token -> id) and merge list, built exactly as CLIP's SimpleTokenizer builds them."""
    lines = gzip.open(bpe_path).read().decode("utf-8").split("\n")
    merges = lines[1:NUM_MERGES + 1]
    tokens = bytes_to_unicode()
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens += ["".join(m.split()) for m in merges]
    tokens += [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, merges


def fetch_bpe(tmp: Path) -> Path:
    """Download the open-clip-torch wheel (no dependencies) with pip and unzip the vocabulary from it."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), "open-clip-torch"],
                   check=True)
    [wheel] = tmp.glob("open_clip_torch-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        return Path(archive.extract(f"open_clip/{BPE_NAME}", tmp))


def write_tokenizer(out: Path, vocab: dict[str, int], merges: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (out / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "errors": "replace", "add_prefix_space": False, **special}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(special, indent=2) + "\n")
    (out / "LICENSE").write_text(LICENSE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bpe", type=Path, help=f"path to {BPE_NAME} (default: fetch the open-clip-torch wheel)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="tokenizer folder to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        bpe = args.bpe or fetch_bpe(Path(tmp))
        vocab, merges = convert(bpe)
    write_tokenizer(args.out, vocab, merges)
    print(f"wrote {len(vocab)} tokens and {len(merges)} merges to {args.out}")


if __name__ == "__main__":
    main()
