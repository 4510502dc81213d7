"""FLUX.1 denoise loop: a wrapper on the core loop driver and its denoiser / after-denoiser sub-blocks.

The wrapper resets the guider once per call and tells it each step; the denoiser runs the transformer, with
the distilled guidance of dev models, on every branch the guider asks for in one batched forward (true CFG:
the conditional and the negative-prompt branch); the after-denoiser takes the Euler step.
"""

from __future__ import annotations

from functools import partial

import torch

from ...modular_pipelines import (
    InputParam,
    LoopSequentialPipelineBlocks,
    ModularPipelineBlocks,
    OutputParam,
)
from ...modular_pipelines.remote import moved_classes
from ..checks import FINITE_TENSOR
from ..guidance import guided_forward
from .inputs import FLUX_STEPS, GUIDANCE_SCALE, GUIDER, MODEL_NAME, SCHEDULER, TRANSFORMER

LATENTS = InputParam("latents", type_hint=FINITE_TENSOR, required=True, description="the packed latents being denoised")


RESIDUALS = ("controlnet_block_samples", "controlnet_single_block_samples")


def transformer_forward(transformer, img_ids, txt_ids, hidden_states, t, branches=None, **kwargs):
    """One FLUX forward as :func:`~diffblocks.blocks.guidance.guided_forward` calls it: the timestep
    ``t`` (in ``[0, 1000]``) per row scaled to the flow time, the ids shared by every row, and, repeated for every
    branch: ControlNet residuals (computed once, on the prompt, as FluxControlNetPipeline does), a Fill model's
    ``condition_latents`` (read beside the latents, channel-wise) and Kontext's ``context_latents`` (read after
    them, token-wise, at ``context_ids``; only the latents' tokens are predicted)."""
    rows, tokens = hidden_states.shape[:2]
    timestep = t.expand(rows).to(hidden_states.dtype) / 1000
    condition = kwargs.pop("condition_latents", None)
    if condition is not None:
        hidden_states = torch.cat((hidden_states, _per_row(condition, rows).to(hidden_states.dtype)), dim=2)
    context, context_ids = kwargs.pop("context_latents", None), kwargs.pop("context_ids", None)
    if context is not None:
        hidden_states = torch.cat((hidden_states, _per_row(context, rows).to(hidden_states.dtype)), dim=1)
        img_ids = torch.cat((img_ids, context_ids.to(img_ids)))
    for name in RESIDUALS:
        if kwargs.get(name) is not None:
            kwargs[name] = [_per_row(r, rows) for r in kwargs[name]]
    out = transformer(hidden_states=hidden_states, timestep=timestep, img_ids=img_ids, txt_ids=txt_ids,
                      return_dict=False, **kwargs)
    return out if context is None else (out[0][:, :tokens], *out[1:])


def _per_row(tensor: torch.Tensor, rows: int) -> torch.Tensor:
    """``tensor`` (the rows of one branch) repeated for each of the branches in a batch of ``rows``."""
    return tensor.repeat(rows // tensor.shape[0], *([1] * (tensor.dim() - 1)))


def distilled_guidance(transformer, scale: float, latents: torch.Tensor) -> torch.Tensor | None:
    """``scale`` for every row, float32, for a transformer with a guidance embedding (FLUX.1-dev); else None."""
    if not transformer.config.guidance_embeds:
        return None
    return torch.full([1], scale, device=latents.device, dtype=torch.float32).expand(latents.shape[0])


class FluxLoopDenoiser(ModularPipelineBlocks):
    """Predict the velocity: the guider's branches in one batched transformer forward, combined by the guider.

    Without negative embeddings a plain guider (CFG) is skipped and only the conditional prediction runs
    (FluxPipeline's true CFG, too, needs a negative prompt); a perturbed guider (skip-layer, PAG) still runs
    its branches, its unconditional one on the prompt.
    """

    model_name = MODEL_NAME
    expected_components = [GUIDER, TRANSFORMER]
    inputs = [
        LATENTS,
        InputParam("prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("pooled_prompt_embeds", type_hint=torch.Tensor, required=True),
        InputParam("negative_prompt_embeds", type_hint=torch.Tensor),
        InputParam("negative_pooled_prompt_embeds", type_hint=torch.Tensor),
        InputParam("text_ids", type_hint=torch.Tensor, required=True),
        InputParam("latent_image_ids", type_hint=torch.Tensor, required=True),
        GUIDANCE_SCALE,
        InputParam("joint_attention_kwargs", type_hint=dict, description="passed to the attention processors"),
        InputParam("split_guidance_batches", type_hint=bool, default=False,
                   description="run each guidance branch as its own forward (less memory, same result)"),
        InputParam("ip_adapter_embeds", type_hint=list, description="IP-Adapter image embeddings, one per adapter"),
        InputParam("negative_ip_adapter_embeds", type_hint=list),
    ]
    intermediate_outputs = [OutputParam("noise_pred", type_hint=torch.Tensor, description="the guided velocity")]

    def __call__(self, components, block_state, i, t):
        transformer = components.transformer
        forward = partial(transformer_forward, transformer, block_state.latent_image_ids, block_state.text_ids,
                          **self.controls(components, block_state, i, t))
        guidance = distilled_guidance(transformer, block_state.guidance_scale, block_state.latents)
        shared = {"guidance": guidance, "joint_attention_kwargs": block_state.joint_attention_kwargs}
        guider = components.guider
        negatives = block_state.negative_prompt_embeds, block_state.negative_pooled_prompt_embeds
        ip_adapter = (block_state.ip_adapter_embeds, block_state.negative_ip_adapter_embeds)
        if any(n is None for n in negatives) and not guider.perturbations:
            out = forward(block_state.latents, t, encoder_hidden_states=block_state.prompt_embeds,
                          pooled_projections=block_state.pooled_prompt_embeds, ip_adapter_image_embeds=ip_adapter[0],
                          **shared)
            block_state.noise_pred = out[0]
            return components, block_state
        if any(n is None for n in negatives):  # a perturbed guider's unconditional branch: the prompt itself
            negatives, ip_adapter = (None, None), (ip_adapter[0], None)
        conditioning = {
            "encoder_hidden_states": (block_state.prompt_embeds, negatives[0]),
            "pooled_projections": (block_state.pooled_prompt_embeds, negatives[1]),
            "ip_adapter_image_embeds": ip_adapter,
        }
        block_state.noise_pred = guided_forward(
            guider, transformer, block_state.latents, t, conditioning, shared,
            split=block_state.split_guidance_batches, forward=forward,
            parallel=getattr(components, "guidance_parallel", None))
        return components, block_state

    def controls(self, components, block_state, i, t) -> dict:
        """Extra transformer inputs for step ``i`` shared by every branch (a ControlNet's residuals); none here."""
        return {}


class FluxLoopAfterDenoiser(ModularPipelineBlocks):
    """Take one scheduler step (keeping the latents' dtype)."""

    model_name = MODEL_NAME
    expected_components = [SCHEDULER]
    inputs = [LATENTS, InputParam("noise_pred", type_hint=torch.Tensor, required=True)]
    intermediate_outputs = [OutputParam("latents", type_hint=torch.Tensor, description="the denoised packed latents")]

    def __call__(self, components, block_state, i, t):
        dtype = block_state.latents.dtype
        latents = components.scheduler.step(block_state.noise_pred, t, block_state.latents, return_dict=False)[0]
        block_state.latents = latents.to(dtype)
        return components, block_state


class FluxDenoiseLoopWrapper(LoopSequentialPipelineBlocks):
    """Iterate over the timesteps, running the sub-blocks once per step."""

    model_name = MODEL_NAME
    block_names = ["denoiser", "after_denoiser"]  # a subclass gives the block_classes
    loop_expected_components = [GUIDER, SCHEDULER, TRANSFORMER]
    loop_inputs = [
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
        FLUX_STEPS.replace(default=None, required=True),
    ]

    def before_loop(self, components, block_state) -> None:
        guider = components.guider
        guider.reset()
        guider.check_model(components.transformer)  # a layer the transformer lacks fails before step 0

    def before_step(self, components, block_state, i, t) -> None:
        components.guider.set_state(step=i, num_inference_steps=block_state.num_inference_steps, timestep=t)


class FluxDenoiseStep(FluxDenoiseLoopWrapper):
    """The text-to-image denoise loop."""

    block_classes = [FluxLoopDenoiser, FluxLoopAfterDenoiser]


class FluxInpaintLoopAfterDenoiser(FluxLoopAfterDenoiser):
    """Take one scheduler step, then put back the unmasked region: the image latents noised to the next
    timestep (none after the last step)."""

    inputs = FluxLoopAfterDenoiser.inputs + [
        InputParam("mask", type_hint=torch.Tensor, required=True),
        InputParam("image_latents", type_hint=torch.Tensor, required=True),
        InputParam("noise", type_hint=torch.Tensor, required=True),
        InputParam("timesteps", type_hint=torch.Tensor, required=True),
    ]

    def __call__(self, components, block_state, i, t):
        components, block_state = super().__call__(components, block_state, i, t)
        known = block_state.image_latents
        if i < len(block_state.timesteps) - 1:
            known = components.scheduler.scale_noise(known, block_state.timesteps[i + 1:i + 2], block_state.noise)
        block_state.latents = (1 - block_state.mask) * known + block_state.mask * block_state.latents
        return components, block_state


class FluxInpaintDenoiseStep(FluxDenoiseLoopWrapper):
    """The inpainting denoise loop (the unmasked region follows the noised image)."""

    block_classes = [FluxLoopDenoiser, FluxInpaintLoopAfterDenoiser]


# the Auto denoise step picks the ControlNet loops too, so it is declared with them
__getattr__ = moved_classes(__name__, {"FluxAutoDenoiseStep": f"{__package__}.controlnet"})
