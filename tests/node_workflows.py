"""Workflows the node tests share: text-to-image from leaf blocks and from a preset, on any SD 1.5 repo."""

from __future__ import annotations

import copy

LOAD = {"node": "load", "output": "components"}


def link(node: str, output: str) -> dict:
    return {"node": node, "output": output}


def leaf_text2image(repo: str, prompt: str = "a cat", seed: int = 0, steps: int = 3, **extra) -> dict:
    """SD 1.5 text-to-image, one node per block; the scheduler travels steps -> latents -> denoise."""
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": repo}},
        "text": {"type": "StableDiffusionTextEncoderStep", "inputs": {"components": LOAD, "prompt": prompt}},
        "input": {"type": "StableDiffusionInputStep", "inputs": {
            "prompt_embeds": link("text", "prompt_embeds"), "negative_prompt_embeds": link("text", "negative_prompt_embeds")}},
        "steps": {"type": "StableDiffusionSetTimestepsStep", "inputs": {"components": LOAD, "num_inference_steps": steps}},
        "latents": {"type": "StableDiffusionPrepareLatentsStep", "inputs": {
            "components": LOAD, "scheduler": link("steps", "scheduler"), "batch_size": link("input", "batch_size"),
            "dtype": link("input", "dtype"), "seed": seed}},
        "denoise": {"type": "StableDiffusionDenoiseStep", "inputs": {
            "components": LOAD, "scheduler": link("latents", "scheduler"), "timesteps": link("steps", "timesteps"),
            "num_inference_steps": link("steps", "num_inference_steps"), "latents": link("latents", "latents"),
            "prompt_embeds": link("input", "prompt_embeds"), "negative_prompt_embeds": link("input", "negative_prompt_embeds"),
            **extra}},
        "decode": {"type": "StableDiffusionDecodeStep", "inputs": {
            "components": LOAD, "latents": link("denoise", "latents"), "output_type": "pt"}},
    }}


def preset_text2image(repo: str, prompt: str = "a cat", seed: int = 0, steps: int = 3, preset: str = "sd15-text2image",
                      **inputs) -> dict:
    return {"nodes": {
        "load": {"type": "LoadComponents", "inputs": {"repo": repo}},
        "run": {"type": f"preset:{preset}", "inputs": {"components": LOAD, "prompt": prompt, "seed": seed,
                                                       "num_inference_steps": steps, "output_type": "pt", **inputs}},
    }}


def changed(workflow: dict, node: str, **inputs) -> dict:
    """A copy of ``workflow`` with ``inputs`` of ``node`` replaced."""
    new = copy.deepcopy(workflow)
    new["nodes"][node]["inputs"].update(inputs)
    return new
