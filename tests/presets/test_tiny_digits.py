"""The embedded tiny digits model end to end through the SD 1.5 text-to-image preset.

Quality: the ten digits generated from prompts (fixed seeds, one shared starting noise per seed) are
recognised by a classifier trained here on scikit-learn's digits, at least 8 of 10 for each of two seeds.
"""

import json

import numpy as np
import pytest
import regex
import torch
import torch.nn.functional as F
from transformers import CLIPTextModel, CLIPTokenizer

from diffblocks import SequentialPipelineBlocks
from diffblocks.components.models import AutoencoderKL, UNet2DConditionModel
from diffblocks.components.schedulers import DDIMScheduler
from diffblocks.presets import embedded_model_path
from diffblocks.presets.stable_diffusion import TEXT2IMAGE_BLOCKS

WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
STEPS = 20
MAX_WEIGHT_BYTES = 10_000_000


@pytest.fixture(scope="module")
def pipe():
    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(embedded_model_path())
    pipe.load_components()
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def classifier():
    """An SVM on scikit-learn's digits, seen through the same 32x32 upsampling as the training images."""
    from sklearn.datasets import load_digits
    from sklearn.svm import SVC

    digits = load_digits()
    ink = torch.tensor(digits.images, dtype=torch.float32)[:, None] / 16
    ink = F.interpolate(ink, size=32, mode="bicubic", align_corners=False).clamp(0, 1)
    return SVC(gamma="scale").fit(features(ink), digits.target)


def features(ink: torch.Tensor) -> np.ndarray:
    """Ink (N, 1, 32, 32) in [0, 1] averaged down to 8x8."""
    return F.avg_pool2d(ink, 4).flatten(1).numpy()


def generate_digits(pipe, seed: int, **kwargs) -> torch.Tensor:
    prompts = [f"a handwritten digit {w}" for w in WORDS]
    generators = [torch.Generator().manual_seed(seed) for _ in prompts]
    return pipe(prompt=prompts, generator=generators, num_inference_steps=STEPS, output_type="pt", output="images",
                **kwargs)


def test_is_a_standard_sd15_folder():
    root = embedded_model_path()
    index = json.loads((root / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    assert index["unet"] == ["diffusers", "UNet2DConditionModel"]
    assert index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["text_encoder"] == ["transformers", "CLIPTextModel"]
    assert index["tokenizer"] == ["transformers", "CLIPTokenizer"]
    assert index["scheduler"] == ["diffusers", "DDIMScheduler"]
    weights = sum(p.stat().st_size for p in root.rglob("*.safetensors"))
    assert weights <= MAX_WEIGHT_BYTES, f"{weights / 1e6:.1f} MB of weights"
    readme = (root / "README.md").read_text()
    assert "examples/train_tiny_digits.py" in readme and "Seed" in readme
    assert "MIT" in (root / "tokenizer" / "LICENSE").read_text()


def test_loads_through_the_preset(pipe):
    assert isinstance(pipe.unet, UNet2DConditionModel)
    assert isinstance(pipe.vae, AutoencoderKL)
    assert isinstance(pipe.text_encoder, CLIPTextModel)
    assert isinstance(pipe.scheduler, DDIMScheduler)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert {pipe.unet.dtype, pipe.vae.dtype, pipe.text_encoder.dtype} == {torch.float32}


# ten pictures of 20 steps each: the second seed repeats the check, in the slow run only
@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_generated_digits_are_recognised(pipe, classifier, seed):
    images = generate_digits(pipe, seed)
    assert images.shape == (10, 3, 32, 32)
    ink = 1 - images.mean(dim=1, keepdim=True)
    predicted = classifier.predict(features(ink))
    recognised = int((predicted == np.arange(10)).sum())
    assert recognised >= 8, f"seed {seed}: recognised {recognised}/10, predicted {predicted.tolist()}"


def test_prompt_wording_does_not_matter(pipe, classifier):
    prompts = ["the number 7", "7", "seven", "a handwritten digit 7"]
    generators = [torch.Generator().manual_seed(3) for _ in prompts]
    images = pipe(prompt=prompts, generator=generators, num_inference_steps=STEPS, output_type="pt", output="images")
    predicted = classifier.predict(features(1 - images.mean(dim=1, keepdim=True)))
    assert (predicted == 7).sum() >= 3, predicted.tolist()


def test_matches_diffusers(pipe):
    """diffusers reads the folder as a StableDiffusionPipeline and draws the same pictures."""
    import diffusers

    reference = diffusers.StableDiffusionPipeline.from_pretrained(
        embedded_model_path(), safety_checker=None, requires_safety_checker=False)
    reference.set_progress_bar_config(disable=True)
    kwargs = dict(num_inference_steps=5, output_type="pt")
    ours = pipe(prompt="the number 3", generator=torch.Generator().manual_seed(0), output="images", **kwargs)
    theirs = reference("the number 3", generator=torch.Generator().manual_seed(0), **kwargs).images
    assert (ours - theirs).abs().max().item() <= 1e-4


# --- the tokenizer is CLIP's -----------------------------------------------------------------------

# Ids from open_clip's SimpleTokenizer (CLIP's reference tokenizer) on the same vocabulary.
CLIP_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a handwritten digit seven": [49406, 320, 35192, 27472, 5757, 49407],
    "the number 7": [49406, 518, 2842, 278, 49407],
    "An astronaut riding a horse on Mars, 4k!": [49406, 550, 18376, 6765, 320, 4558, 525, 7496, 267, 275, 330, 256,
                                                 49407],
    "don't panic: 3.14159 isn't pi": [49406, 847, 713, 14124, 281, 274, 269, 272, 275, 272, 276, 280, 2923, 713, 5357,
                                      49407],
    "Ünïcödé café naïve": [49406, 6522, 77, 35689, 66, 7255, 67, 4166, 15304, 1097, 35689, 563, 49407],
}


@pytest.fixture(scope="module")
def tokenizer():
    return CLIPTokenizer.from_pretrained(embedded_model_path() / "tokenizer")


def test_tokenizer_gives_clip_ids(tokenizer):
    assert len(tokenizer) == 49408 and tokenizer.model_max_length == 77
    for prompt, ids in CLIP_IDS.items():
        assert tokenizer(prompt).input_ids == ids, prompt


class ReferenceBPE:
    """CLIP's byte-level BPE (OpenAI's simple_tokenizer.py, without ftfy), over the shipped files."""

    PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""",
                            regex.IGNORECASE)

    def __init__(self, folder):
        self.encoder = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        merges = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")[1:]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(m for m in merges if m)}
        self.byte_encoder = bytes_to_unicode()

    def bpe(self, token: str) -> list[str]:
        word = list(token[:-1]) + [token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:])}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        return word

    def encode(self, text: str) -> list[int]:
        text = " ".join(text.split()).lower()
        ids = []
        for token in self.PATTERN.findall(text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(token))
        return [self.encoder["<|startoftext|>"]] + ids + [self.encoder["<|endoftext|>"]]


def bytes_to_unicode() -> dict[int, str]:
    """CLIP's printable stand-ins for the 256 byte values."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def test_tokenizer_matches_reference_bpe(tokenizer):
    reference = ReferenceBPE(embedded_model_path() / "tokenizer")
    for prompt, ids in CLIP_IDS.items():
        assert reference.encode(prompt) == ids, prompt
    prompts = [
        "a handwritten digit nine", "The NUMBER 42, twice", "photorealistic portrait of an elderly fisherman",
        "cyberpunk city at night, neon lights, 8k, trending on artstation", "hello    world\ttabs",
        "emoji 🐱 and accents: crème brûlée", "supercalifragilisticexpialidocious", "",
    ]
    for prompt in prompts:
        assert tokenizer(prompt).input_ids == reference.encode(prompt), prompt
