"""Original Stable Diffusion checkpoints: one file (``.safetensors``, or a pickled ``.ckpt`` read weights-only) holding
the UNet, the VAE and the text encoder(s) under CompVis / Stability's names, as A1111, ComfyUI and Forge keep them
(``v1-5-pruned-emaonly``, ``sd_xl_base_1.0``, and the fine-tunes shared that way). The file gives the weights; a diffusers-format repo of the
same family gives the configs (and the tokenizers and scheduler, which such files do not hold): by default the
family's reference repo's, shipped in ``family_configs/``, so that a checkpoint loads offline.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from .checkpoint_names import clip_names, open_clip_to_clip, rename, unet_table, vae_table
from .errors import ConfigError, MissingFileError, WeightsMismatchError

# what each family's file holds: component -> the prefix of its tensors
PARTS = {
    "sd15": {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.transformer."},
    "sd2": {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model.model."},
    "sdxl": {"unet": "model.diffusion_model.", "vae": "first_stage_model.",
             "text_encoder": "conditioner.embedders.0.transformer.", "text_encoder_2": "conditioner.embedders.1.model."},
}
MODEL_PARTS = {name for parts in PARTS.values() for name in parts}  # the components a checkpoint file holds
# the diffusers repo whose configs describe a family's checkpoints, when none is given (shipped: FAMILY_CONFIGS)
CONFIG_REPOS = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5", "sd2": "stabilityai/stable-diffusion-2-1",
                "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}
# ... for inpainting checkpoints (their UNet reads 9 channels: the latents, the masked image's and the mask)
INPAINT_CONFIG_REPOS = {"sd15": "stable-diffusion-v1-5/stable-diffusion-inpainting",
                        "sd2": "stabilityai/stable-diffusion-2-inpainting",
                        "sdxl": "diffusers/stable-diffusion-xl-1.0-inpainting-0.1"}
# those repos' configs, tokenizers and scheduler (no weights), in folders named by family ("sd15", "sd15-inpainting")
FAMILY_CONFIGS = Path(__file__).parent / "family_configs"
PRESET_FAMILIES = {"sd15": "sd15", "sd2": "sd15", "sdxl": "sdxl"}  # SD 2.x runs Stable Diffusion 1.x's blocks
CONV_IN = "model.diffusion_model.input_blocks.0.0.weight"
FAMILY_NAMES = {"sd15": "a Stable Diffusion 1.x", "sd2": "a Stable Diffusion 2.x", "sdxl": "an SDXL"}  # as in "is an SDXL checkpoint"


def checkpoint_family(keys) -> str:
    """``"sd15"``, ``"sd2"`` or ``"sdxl"`` for an original checkpoint's tensor names.

    Raises:
        ConfigError: another kind of file (FLUX.1's transformer, a LoRA, diffusers' layout), saying so.
    """
    keys = list(keys)
    if any(k.startswith("conditioner.embedders.1.model.") for k in keys):
        return "sdxl"
    if any(k.startswith("cond_stage_model.transformer.") for k in keys):
        return "sd15"
    if any(k.startswith("cond_stage_model.model.") for k in keys):  # OpenCLIP ViT-H
        return "sd2"
    if any(k.startswith("conditioner.embedders.0.model.") for k in keys) and any(  # OpenCLIP alone, and the UNet
            k.startswith("model.diffusion_model.label_emb.") for k in keys):  # conditioned on sizes and a score
        kind = "SDXL's refiner (its second pass), which diffblocks does not run yet: load the SDXL base checkpoint"
    elif any("double_blocks." in k for k in keys):
        kind = "a FLUX.1 transformer (FluxTransformer2DModel.from_single_file; --transformer in the CLI)"
    elif any("lora" in k for k in keys):
        kind = "a LoRA (pipe.loader.load_lora_weights; --lora in the CLI)"
    else:
        kind = "not an original Stable Diffusion checkpoint (no model.diffusion_model / cond_stage_model tensors)"
    raise ConfigError(f"this file is {kind}")


def file_family(path: str | os.PathLike) -> str:
    """:func:`checkpoint_family` of a file (a safetensors file's header alone)."""
    from .models.weights import tensor_shapes

    return checkpoint_family(tensor_shapes(path))


def load_checkpoint(path: str | os.PathLike, config: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                    revision: str | None = None) -> dict[str, Any]:
    """The models an original checkpoint holds, by component name (``unet``, ``vae``, ``text_encoder``, and
    ``text_encoder_2`` for SDXL), each built from ``config``'s config of it (a diffusers folder or Hub repo) and
    filled from the memory-mapped file; a part the file lacks is left out (load it from ``config``).

    Raises:
        MissingFileError, CorruptedFileError: the file. ConfigError: not an SD 1.x / 2.x / SDXL checkpoint, or an
        EDM model (:func:`sampling_settings`).
        WeightsMismatchError: a part's tensors do not fit ``config``'s model (another family or size).
    """
    return read_checkpoint(path, config, torch_dtype, revision)[0]


def read_checkpoint(path: str | os.PathLike, config: str | os.PathLike, torch_dtype: torch.dtype | None = None,
                    revision: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """:func:`load_checkpoint`'s models, and the changes the file asks of the scheduler's config
    (:func:`sampling_settings`), from one reading of the file."""
    from .models.weights import read_weights, single_file

    file = single_file(path, revision)
    state_dict = read_weights([file])
    family = checkpoint_family(state_dict)
    changes = sampling_settings(state_dict, family, shipped_reference(config) is not None)
    dtype = torch_dtype or torch.get_default_dtype()
    models = {}
    for name, prefix in PARTS[family].items():
        part = {key[len(prefix):]: tensor for key, tensor in state_dict.items() if key.startswith(prefix)}
        if part:
            try:
                models[name] = _build(name, part, config, dtype, revision, f"{file} ({name})", changes.get(name, {}))
            except WeightsMismatchError as err:
                reference = shipped_reference(config)
                if reference is None:
                    raise
                raise WeightsMismatchError.not_the_reference(err, FAMILY_NAMES[family], reference) from err
    return models, changes.get("scheduler", {})


# SD 2.x's last transformer block's first norm: its bias spreads wider in the 768 v-prediction models than in the
# 512 epsilon ones (2.0-base, 2.1-base), as ComfyUI tells them apart
SD2_V_PROBE, SD2_V_SPREAD = "model.diffusion_model.output_blocks.11.1.transformer_blocks.0.norm1.bias", 0.09
SD2_BASE_SAMPLE_SIZE = 64  # the base models' latents: 512 pixels


def sampling_settings(state_dict: Mapping[str, torch.Tensor], family: str, shipped: bool) -> dict[str, dict[str, Any]]:
    """What a checkpoint's own tensors say of how it samples, over its configs: the changes to make to the
    ``scheduler``'s config and the ``unet``'s, by component (empty: none).

    - ``v_pred`` (an empty tensor that ComfyUI and trainers save in v-prediction files): the model predicts v;
      with ``ztsnr`` too, it was trained with zero terminal SNR (anime SDXL fine-tunes): the betas rescaled.
    - An SD 2.x file without that marker, read with the shipped configs (2.1's, a 768 v-prediction model): a 512
      epsilon model (2.0-base, 2.1-base, their fine-tunes) when its last block's norm bias spreads little.
      Configs given are taken at their word.

    Raises:
        ConfigError: an EDM model (Playground v2.5, CosXL), whose sampling diffblocks does not run.
    """
    if "edm_mean" in state_dict or "edm_vpred.sigma_max" in state_dict:
        kind = "Playground v2.5" if "edm_mean" in state_dict else "CosXL"
        raise ConfigError(f"this checkpoint is an EDM model ({kind}'s kind: its noise levels are continuous), "
                          "whose sampling diffblocks does not run yet")
    if "v_pred" in state_dict:
        return {"scheduler": {"prediction_type": "v_prediction", "rescale_betas_zero_snr": "ztsnr" in state_dict}}
    probe = state_dict.get(SD2_V_PROBE)
    if family != "sd2" or not shipped or probe is None or state_dict[CONV_IN].shape[1] != 4:  # inpainting: epsilon
        return {}
    if probe.float().std(unbiased=False).item() > SD2_V_SPREAD:
        return {}  # the shipped configs' own model
    return {"scheduler": {"prediction_type": "epsilon"}, "unet": {"sample_size": SD2_BASE_SAMPLE_SIZE}}


VAE_PREFIXES = ("first_stage_model.", "vae.")  # a full checkpoint's VAE, or ComfyUI's
CONTROLNET_PREFIXES = ("control_model.",)


def load_vae_file(path: str | os.PathLike, config: str | os.PathLike | Mapping[str, Any],
                  torch_dtype: torch.dtype | None = None, revision: str | None = None):
    """An ``AutoencoderKL`` from one file: a VAE alone in the original layout (``vae-ft-mse-840000-ema-pruned``,
    ``sdxl_vae``, FLUX.1's ``ae``), a full checkpoint's VAE, or diffusers' layout. ``config``: the VAE's config, or a
    repo / folder whose ``vae/config.json`` (or ``config.json``) it is; it gives what the weights cannot, such as the
    latents' scaling factor.

    Raises:
        MissingFileError, CorruptedFileError: the file. WeightsMismatchError: the weights do not fit ``config``.
    """
    from .models import AutoencoderKL

    file, state_dict = _read(path, VAE_PREFIXES, revision)
    settings = config_of(AutoencoderKL, config, ("vae", None), revision)
    table = vae_table(settings) if any(key.startswith("encoder.down.") for key in state_dict) else None
    return _filled(AutoencoderKL, settings, _without_loss(state_dict), table, torch_dtype, str(file))


def load_controlnet_file(path: str | os.PathLike, config: str | os.PathLike | Mapping[str, Any],
                         torch_dtype: torch.dtype | None = None, revision: str | None = None):
    """A ``ControlNetModel`` from one file: the original layout (``control_v11p_sd15_canny.safetensors``: the
    UNet's encoder under ``input_blocks``, ``zero_convs``, ``input_hint_block``) or diffusers'. ``config``: a
    ControlNet config, or the repo of the base model, whose UNet config the ControlNet's encoder copies (the
    control-image encoder's widths are read off the file).

    Raises:
        MissingFileError, CorruptedFileError: the file. WeightsMismatchError: the weights do not fit the config.
    """
    from .checkpoint_names import controlnet_hint_widths, controlnet_table
    from .models import ControlNetModel, UNet2DConditionModel

    file, state_dict = _read(path, CONTROLNET_PREFIXES, revision)
    try:
        settings = config_of(ControlNetModel, config, ("controlnet",), revision)
    except MissingFileError:  # the base model's repo: the encoder is its UNet's
        settings = config_of(UNet2DConditionModel, config, ("unet",), revision)
    settings = {k: v for k, v in settings.items() if k in ControlNetModel.init_params()}
    table = None
    if "input_hint_block.0.weight" in state_dict:  # the original layout
        widths, channels = controlnet_hint_widths(state_dict)
        settings.update(conditioning_embedding_out_channels=widths, conditioning_channels=channels)
        table = controlnet_table(settings)
    return _filled(ControlNetModel, settings, state_dict, table, torch_dtype, str(file))


def config_of(cls, config: str | os.PathLike | Mapping[str, Any], subfolders, revision: str | None = None) -> dict:
    """``config`` itself when it is one, else the config of ``cls`` in the first of ``subfolders`` (None: the
    top) of that folder or repo that has one."""
    if isinstance(config, Mapping):
        return dict(config)
    for subfolder in subfolders[:-1]:
        try:
            return dict(cls.load_config(config, subfolder=subfolder, revision=revision))
        except MissingFileError:
            continue
    return dict(cls.load_config(config, subfolder=subfolders[-1], revision=revision))


def _read(path, prefixes, revision) -> tuple[Path, dict[str, torch.Tensor]]:
    """The file's path and tensors, without the first of ``prefixes`` they have (the rest dropped)."""
    from .models.weights import read_weights, single_file

    file = single_file(path, revision)
    state_dict = read_weights([file])
    for prefix in prefixes:
        if any(key.startswith(prefix) for key in state_dict):
            return file, {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    return file, state_dict


def _without_loss(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A VAE's tensors without a training checkpoint's loss (a discriminator): not the model."""
    return {k: v for k, v in state_dict.items() if not k.startswith("loss.")}


def _filled(cls, settings: Mapping[str, Any], state_dict, table, torch_dtype, where: str):
    """``cls`` built from ``settings`` on the meta device and given ``state_dict`` (renamed by ``table``, the
    original layout's, when given)."""
    from .models.modeling import empty_weights

    with empty_weights():
        model = cls.from_config(dict(settings))
    weights = rename(state_dict, table) if table is not None else state_dict
    model.load_weights(weights, torch_dtype=torch_dtype or torch.get_default_dtype(), source=where)
    return model.eval()


def _build(name: str, part: dict[str, torch.Tensor], config, dtype: torch.dtype, revision, where: str,
           changes: Mapping[str, Any]) -> Any:
    from .models import AutoencoderKL, UNet2DConditionModel

    if name == "unet":
        settings = {**config_of(UNet2DConditionModel, config, ("unet",), revision), **changes}
        return _filled(UNet2DConditionModel, settings, part, unet_table(settings), dtype, where)
    if name == "vae":
        settings = config_of(AutoencoderKL, config, ("vae",), revision)
        return _filled(AutoencoderKL, settings, _without_loss(part), vae_table(settings), dtype, where)
    import transformers

    from .models.modeling import empty_weights

    cls = transformers.CLIPTextModel if name == "text_encoder" else transformers.CLIPTextModelWithProjection
    settings = cls.config_class.from_pretrained(str(config), subfolder=name, revision=revision)
    with empty_weights():
        model = cls(settings)
    if "token_embedding.weight" in part:  # OpenCLIP's layout (SD 2.x's text encoder, SDXL's second)
        part = open_clip_to_clip(part)
        if name == "text_encoder":  # SD 2.x reads the penultimate layer: the model has one layer less, no projection
            part = {k: v for k, v in part.items() if k != "text_projection.weight"
                    and not _layer_beyond(k, settings.num_hidden_layers)}
    state = clip_names(part, model)
    fill(model, state, dtype, where)
    return model.eval()


def _layer_beyond(key: str, layers: int) -> bool:
    """Whether ``key`` is in text-encoder layer ``layers`` or later."""
    prefix = "text_model.encoder.layers."
    return key.startswith(prefix) and int(key[len(prefix):].split(".", 1)[0]) >= layers


def fill(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], dtype: torch.dtype, where: str) -> None:
    """Give ``model`` (built on the meta device) the tensors of ``state_dict``, in ``dtype``: every parameter must
    be there and nothing else; buffers it computes itself (position ids) may be."""
    expected = model.state_dict()
    params = {name for name, _ in model.named_parameters()}
    missing, unexpected = params - set(state_dict), set(state_dict) - set(expected)
    if missing or unexpected:
        raise WeightsMismatchError.keys(where, sorted(missing), sorted(unexpected))
    converted = {}
    for key, tensor in state_dict.items():
        if tensor.shape != expected[key].shape:
            raise WeightsMismatchError.shape(where, key, tuple(expected[key].shape), tuple(tensor.shape))
        converted[key] = tensor.to(dtype) if tensor.is_floating_point() and tensor.dtype != dtype else tensor
    model.load_state_dict(converted, strict=False, assign=True)


def config_repo(family: str, given: str | os.PathLike | None, file: str | os.PathLike | None = None) -> str:
    """The repo describing a ``family`` checkpoint: the given one, else the shipped configs of the family's reference
    repo (``CONFIG_REPOS``; ``INPAINT_CONFIG_REPOS`` when ``file``'s UNet reads 9 channels)."""
    if given is not None:
        return str(given)
    return str(FAMILY_CONFIGS / (f"{family}-inpainting" if file is not None and _inpainting(file) else family))


def shipped_reference(config: str | os.PathLike | Mapping[str, Any]) -> str | None:
    """The reference repo whose configs ``config`` is, when it is a folder of ``FAMILY_CONFIGS``; else None."""
    if isinstance(config, Mapping) or Path(config).parent != FAMILY_CONFIGS:
        return None
    family, _, inpainting = Path(config).name.partition("-")
    return (INPAINT_CONFIG_REPOS if inpainting else CONFIG_REPOS)[family]


def _inpainting(file: str | os.PathLike) -> bool:
    from .models.weights import tensor_shapes

    return tensor_shapes(file).get(CONV_IN, (0, 0))[1:2] == (9,)
