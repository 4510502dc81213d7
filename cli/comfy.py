"""What a ComfyUI image's graph (its ``prompt`` text, ComfyUI's API format: ``{id: {"class_type", "inputs"}}``, an
input a value or ``[source id, output]``) sets, in A1111's terms, for ``--from-image``: a text-to-image graph of
ComfyUI's core nodes, with its hires fix when it has one (a second KSampler painting the first one's result again,
enlarged on its way), or FLUX.1's (its guidance as Forge's Distilled CFG Scale). Its settings carry over; its pixels
do not (ComfyUI draws its noise its own way)."""

from __future__ import annotations

import re
from typing import Any

from .choices import SCHEDULE_NAMES, schedule_key

# ComfyUI's sampler_name -> A1111's sampler names (its "scheduler", the sigma spacing, carried over when karras,
# exponential, beta, sgm_uniform or simple: A1111's Schedule type)
SAMPLERS = {"euler": "Euler", "euler_ancestral": "Euler a", "ddim": "DDIM", "ddpm": "DDPM", "dpmpp_2m": "DPM++ 2M",
            "dpmpp_2m_sde": "DPM++ 2M SDE", "dpmpp_2m_sde_gpu": "DPM++ 2M SDE", "uni_pc": "UniPC", "lcm": "LCM",
            "heun": "Heun", "lms": "LMS", "dpm_2": "DPM2", "dpm_2_ancestral": "DPM2 a"}
# an upscale model's factor, as its name gives it: "4x-UltraSharp", "RealESRGAN_x4plus"
MODEL_FACTOR = re.compile(r"(?:^|[^\d])([2-8])x|x([2-8])(?:\D|$)", re.I)
MAX_HOPS = 100  # nodes followed from one sampler to another (a graph may loop)
SAMPLER_NODES = ("KSampler", "SamplerCustomAdvanced", "SamplerCustom")
# the nodes that put a ControlNet on the conditioning on its way to the sampler -> the input it comes through
CONTROLNET_APPLY = {"ControlNetApply": "conditioning", "ControlNetApplyAdvanced": "positive",
                    "ControlNetApplySD3": "positive"}
LORA_LOADERS = ("LoraLoader", "LoraLoaderModelOnly")
EMPTY_LATENTS = ("EmptyLatentImage", "EmptySD3LatentImage")  # the second, FLUX.1's and SD3's
PREDICTIONS = {"eps": "epsilon", "v_prediction": "v_prediction"}  # ModelSamplingDiscrete's sampling -> ours
FREEU_NODES = {"FreeU": 1, "FreeU_V2": 2}  # -> the version


def settings(graph: Any) -> tuple[str, str | None, dict[str, Any], list[str]]:
    """``(prompt, negative prompt, fields, notes)`` of ComfyUI's graph when it is a text-to-image one: one KSampler
    from an empty latent, prompted by CLIPTextEncode nodes, or two for a hires fix; for FLUX.1, a KSampler or a
    SamplerCustomAdvanced (its noise, guider, sampler and sigmas nodes), the prompt through FluxGuidance.
    ``fields`` are A1111's (``Steps``, ``Sampler``, ``CFG scale``, ``Seed``, ``Size``; FLUX.1's ``Distilled CFG
    Scale``, as Forge writes it; for a hires fix ``Denoising strength``, ``Hires upscale``, ``Hires steps`` and
    ``Hires upscaler``); ``notes`` say what is not taken, and the model files to give.

    Raises:
        ValueError: why the graph is not read.
    """
    graph = graph if isinstance(graph, dict) else {}

    def source(link: Any) -> dict:
        node = graph.get(str(link[0])) if isinstance(link, list) and link else None
        return node if isinstance(node, dict) else {}

    samplers = [node for node in graph.values() if isinstance(node, dict) and node.get("class_type") in SAMPLER_NODES]
    from_empty = [node for node in samplers
                  if source(node.get("inputs", {}).get("latent_image")).get("class_type") in EMPTY_LATENTS]
    hires = None
    if len(samplers) == 2 and len(from_empty) == 1 and all(node["class_type"] == "KSampler" for node in samplers):
        first = from_empty[0]
        hires = enlarging(next(node for node in samplers if node is not first), first, source)
    if len(samplers) != 1 and hires is None:
        raise ValueError(f"holds a ComfyUI graph with {len(samplers)} samplers; only a plain text-to-image one "
                         "(one KSampler, or two for a hires fix; FLUX.1's SamplerCustomAdvanced) is read")
    inputs = sampler_inputs(from_empty[0] if hires else samplers[0], source)
    latent = source(inputs.get("latent_image"))
    inpaint = _inpaint_note(latent, source)
    if latent.get("class_type") not in EMPTY_LATENTS and inpaint is None:
        raise ValueError("holds a ComfyUI graph that does not start from an EmptyLatentImage; only text-to-image (and "
                         "inpainting) is read")
    notes = [inpaint] if inpaint else []
    prompt, guidance = _text(inputs.get("positive"), source, notes)
    negative, _ = _text(inputs.get("negative"), source, [])
    if prompt is None:
        raise ValueError("holds a ComfyUI graph whose positive prompt is not a CLIPTextEncode with its text")
    size = latent.get("inputs", {}) if inpaint is None else {}  # an inpainting graph: the image's size
    spacing = schedule_key(inputs.get("scheduler")) if isinstance(inputs.get("scheduler"), str) else None
    fields = {"Steps": inputs.get("steps"), "Sampler": SAMPLERS.get(inputs.get("sampler_name")),
              "Schedule type": spacing and SCHEDULE_NAMES[spacing],
              "CFG scale": inputs.get("cfg"), "Distilled CFG Scale": guidance, "Seed": inputs.get("seed"),
              "Size": f"{size.get('width')}x{size.get('height')}" if size.get("width") and size.get("height") else None,
              "Denoising strength": inputs.get("denoise") if inpaint else None}
    fields["Clip skip"] = _clip_skip(inputs.get("positive"), source)
    notes += _model_files(source(inputs.get("model")), source)
    fields.update(model_sampling(source(inputs.get("model")), source, notes))
    fields.update(freeu(source(inputs.get("model")), source))
    if any(isinstance(node, dict) and node.get("class_type") == "VAEDecodeTiled" for node in graph.values()):
        notes.append("its VAEDecodeTiled decodes in tiles: give --vae-tiling (tiles of the VAE's own size)")
    if hires is not None:
        second, (scale, upscaler) = hires
        again = second.get("inputs", {})
        fields.update({"Denoising strength": again.get("denoise", 1.0), "Hires upscale": scale,
                       "Hires steps": again.get("steps"), "Hires upscaler": upscaler})
        for key, what in (("seed", "seed"), ("cfg", "CFG"), ("sampler_name", "sampler")):
            if again.get(key) != inputs.get(key):
                notes.append(f"its second KSampler's own {what} ({again.get(key)}) is not taken: the hires pass takes "
                             "the first's")
    return prompt, negative, fields, notes


def _inpaint_note(latent: dict, source) -> str | None:
    """For the latent of an inpainting graph (VAEEncodeForInpaint, InpaintModelConditioning, SetLatentNoiseMask over
    a VAEEncode), the note naming its image and mask, to give as flags; None for another latent."""
    kind, inputs = latent.get("class_type"), latent.get("inputs", {})
    if kind == "SetLatentNoiseMask":
        encoded = source(inputs.get("samples"))
        if encoded.get("class_type") != "VAEEncode":
            return None
        pixels = encoded.get("inputs", {}).get("pixels")
    elif kind in ("VAEEncodeForInpaint", "InpaintModelConditioning"):
        pixels = inputs.get("pixels")
    else:
        return None
    image, mask = source(pixels), source(inputs.get("mask"))
    name = image.get("inputs", {}).get("image") if image.get("class_type") == "LoadImage" else None
    alpha = mask is image and isinstance(inputs.get("mask"), list) and inputs["mask"][1:2] == [1]
    named = f" ({name})" if name else ""
    where = "; ComfyUI reads it from the image's transparency" if alpha else ""
    return (f"an inpainting graph: give its image{named} as --image and its mask (white where it is painted again"
            f"{where}) as --mask-image, with an inpainting --preset")


def _model_path(model: dict, source):
    """The nodes on the way of ``model`` (the sampler's model node) back to its loader."""
    for _ in range(MAX_HOPS):
        if not model:
            return
        yield model
        if model.get("class_type") in ("CheckpointLoaderSimple", "UNETLoader"):
            return
        model = source(model.get("inputs", {}).get("model"))


def _model_files(model: dict, source) -> list[str]:
    """Notes naming the files on the way of ``model`` from its loader, with the flags that give them: its LoRAs,
    and a UNETLoader's transformer."""
    notes = []
    for node in _model_path(model, source):
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind in LORA_LOADERS and isinstance(inputs.get("lora_name"), str):
            notes.append(f"its LoRA is {inputs['lora_name']} at strength {inputs.get('strength_model', 1)}: give it "
                         "as --lora FILE:STRENGTH")
        elif kind == "UNETLoader" and isinstance(inputs.get("unet_name"), str):
            notes.append(f"its transformer is the UNETLoader's {inputs['unet_name']}: give it as --transformer FILE, "
                         "with a FLUX.1 folder as --model and --preset flux")
    return notes


def freeu(model: dict, source) -> dict[str, Any]:
    """Forge's FreeU fields (``freeu_enabled``, ``freeu_b1`` ... ``freeu_s2``; ``freeu_version`` 1, as
    ``diffblocks run`` writes it, for FreeU, Forge's own being FreeU_V2) for the FreeU or FreeU_V2 node on the way
    of ``model`` nearest the sampler; none without one."""
    node = next((n for n in _model_path(model, source) if n.get("class_type") in FREEU_NODES), None)
    factors = {f"freeu_{k}": (node or {}).get("inputs", {}).get(k) for k in ("b1", "b2", "s1", "s2")}
    if node is None or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in factors.values()):
        return {}
    return {"freeu_enabled": True, **factors, "freeu_version": 1 if FREEU_NODES[node["class_type"]] == 1 else None}


def model_sampling(model: dict, source, notes: list[str]) -> dict[str, Any]:
    """The fields of a ModelSamplingDiscrete on the way of ``model`` (what the model predicts, set by hand for a
    checkpoint that does not say): ``Prediction type`` and ``Zero SNR``, as ``diffblocks run`` writes them; another
    kind of sampling is named in ``notes``."""
    node = next((n for n in _model_path(model, source) if n.get("class_type") == "ModelSamplingDiscrete"), {})
    inputs = node.get("inputs", {})
    kind = PREDICTIONS.get(inputs.get("sampling"))
    if node and kind is None:
        notes.append(f"its ModelSamplingDiscrete's sampling '{inputs.get('sampling')}' is not taken (--prediction-type "
                     "takes epsilon or v_prediction)")
    return {"Prediction type": kind, "Zero SNR": True if kind and inputs.get("zsnr") is True else None}


def _clip_skip(link: Any, source) -> int | None:
    """A1111's Clip skip of a CLIPSetLastLayer on the way of the conditioning ``link``'s text encoder (its
    ``stop_at_clip_layer`` -2 is A1111's 2), or None."""
    node = source(link)
    for _ in range(MAX_HOPS):  # to the text encoding node, through those the conditioning passes
        if not node or "clip" in node.get("inputs", {}):
            break
        inputs = node.get("inputs", {})
        node = source(inputs.get("conditioning", inputs.get("positive")))
    for _ in range(MAX_HOPS):  # then along its CLIP: LoRA loaders, CLIPSetLastLayer, to the checkpoint
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind == "CLIPSetLastLayer" and isinstance(inputs.get("stop_at_clip_layer"), int):
            return -inputs["stop_at_clip_layer"]
        if not node or "clip" not in inputs:
            return None
        node = source(inputs["clip"])
    return None


def sampler_inputs(node: dict, source) -> dict[str, Any]:
    """A sampler's settings as a KSampler's inputs name them (``seed``, ``steps``, ``cfg``, ``sampler_name``,
    ``positive``, ``negative``, ``latent_image``, ``model``): a KSampler's own; a SamplerCustomAdvanced's from the
    nodes it takes (RandomNoise, BasicGuider or CFGGuider, KSamplerSelect, BasicScheduler); a SamplerCustom's from
    both."""
    inputs = node.get("inputs", {})
    if node.get("class_type") == "KSampler":
        return inputs
    guider = source(inputs.get("guider")).get("inputs", {})
    noise = source(inputs.get("noise")).get("inputs", {})
    return {"seed": noise.get("noise_seed", inputs.get("noise_seed")),
            "steps": source(inputs.get("sigmas")).get("inputs", {}).get("steps"),
            "cfg": guider.get("cfg", inputs.get("cfg", 1.0 if guider else None)),
            "sampler_name": source(inputs.get("sampler")).get("inputs", {}).get("sampler_name"),
            "positive": guider.get("conditioning", guider.get("positive", inputs.get("positive"))),
            "negative": guider.get("negative", inputs.get("negative")), "latent_image": inputs.get("latent_image"),
            "model": guider.get("model", inputs.get("model"))}


def _text(link: Any, source, notes: list[str]) -> tuple[str | None, float | None]:
    """``(text, FLUX.1 guidance)`` of the conditioning ``link``: a CLIPTextEncode's text, through FluxGuidance
    nodes (their guidance) and ControlNet apply nodes (each named in ``notes``, as the flags to give); or a
    CLIPTextEncodeFlux's (its T5 text, which ``--prompt`` gives both encoders: a CLIP text of its own is said in
    ``notes``)."""
    node, guidance = source(link), None
    for _ in range(MAX_HOPS):
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind == "FluxGuidance":
            guidance = guidance if guidance is not None else inputs.get("guidance")
            link = inputs.get("conditioning")
        elif kind in CONTROLNET_APPLY:
            negative = CONTROLNET_APPLY[kind] == "positive" and isinstance(link, list) and link[1:2] == [1]
            name = source(inputs.get("control_net")).get("inputs", {}).get("control_net_name")
            if not negative and isinstance(name, str):
                notes.append(f"its ControlNet is {name} at strength {inputs.get('strength', 1)}: give it as "
                             "--controlnet FILE --control-image IMAGE --controlnet-scale STRENGTH")
            link = inputs.get("negative" if negative else CONTROLNET_APPLY[kind])
        else:
            break
        node = source(link)
    inputs = node.get("inputs", {})
    if node.get("class_type") == "CLIPTextEncodeFlux":
        clip, t5 = inputs.get("clip_l"), inputs.get("t5xxl")
        if isinstance(clip, str) and clip and clip != t5:
            notes.append(f"its CLIPTextEncodeFlux's CLIP text ({clip!r}) is not taken: --prompt feeds both encoders")
        return (t5 if isinstance(t5, str) else None), guidance if guidance is not None else inputs.get("guidance")
    text = inputs.get("text")
    return (text if node.get("class_type") == "CLIPTextEncode" and isinstance(text, str) else None), guidance


def enlarging(second: dict, first: dict, source) -> tuple[dict, tuple[float, str]] | None:
    """``(second, (scale, upscaler))`` when the KSampler ``second`` paints ``first``'s result again, enlarged on its
    way: in latent space (LatentUpscaleBy, LatentUpscale: A1111's "Latent" upscalers, by their method) or as an
    image, between a VAEDecode and a VAEEncode (ImageScaleBy, ImageScale: their method; ImageUpscaleWithModel: the
    model, by the factor its name gives); None for any other graph, or a factor not known. ``source`` finds a
    link's node."""
    width = source(first.get("inputs", {}).get("latent_image")).get("inputs", {}).get("width")
    scale, sized, upscaler = 1.0, False, None  # after an ImageScale / LatentUpscale to a size, what came before is moot
    node = source(second.get("inputs", {}).get("latent_image"))
    for _ in range(MAX_HOPS):
        if node is first or not node:
            break
        kind, inputs = node.get("class_type"), node.get("inputs", {})
        if kind == "ImageUpscaleWithModel":
            name = source(inputs.get("upscale_model")).get("inputs", {}).get("model_name")
            factor = MODEL_FACTOR.search(name) if isinstance(name, str) else None
            if factor is None and not sized:
                return None
            upscaler = str(name).replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0]  # it names the upscale
            scale *= 1 if sized else int(factor.group(1) or factor.group(2))
        elif kind in ("LatentUpscaleBy", "ImageScaleBy"):
            by = inputs.get("scale_by")
            if not isinstance(by, (int, float)) or by <= 0:
                return None
            scale *= 1 if sized else by
        elif kind in ("LatentUpscale", "ImageScale"):
            to = inputs.get("width")
            if not isinstance(to, (int, float)) or to <= 0 or not width:
                return None
            scale, sized = (scale if sized else scale * to / width), True
        elif kind not in ("VAEDecode", "VAEDecodeTiled", "VAEEncode"):
            return None
        if kind.startswith("Latent"):  # its method as A1111 names its Latent upscalers (bislerp: no such one here)
            method = str(inputs.get("upscale_method", "nearest-exact"))
            upscaler = upscaler or ("Latent" if method == "bilinear" else f"Latent ({method})")
        elif kind.startswith("ImageScale"):  # the method of the last one, unless a model upscales too
            upscaler = upscaler or str(inputs.get("upscale_method", "lanczos")).capitalize()
        node = source(inputs.get("samples") or inputs.get("pixels") or inputs.get("image"))
    if node is not first:
        return None
    return second, (round(scale, 3), upscaler or "Lanczos")
