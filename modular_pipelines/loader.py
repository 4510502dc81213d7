"""``pipe.loader``: adapters that change a pipeline's components in place (IP-Adapter, LoRA, textual inversion,
FLUX.1 Redux).

The loader is a thin layer: reading checkpoints and installing them into the UNet live in
``components/ip_adapter*.py``; here the pipeline's ``image_encoder`` and ``feature_extractor`` components
are filled in the way diffusers' ``load_ip_adapter`` does.
"""

from __future__ import annotations

import logging
import os
from pathlib import PurePosixPath
from typing import Any, Mapping, Sequence

from ..components.files import try_resolve_file
from ..components.ip_adapter import (
    load_ip_adapters,
    read_ip_adapter,
    set_ip_adapter_scale,
    unload_ip_adapters,
)
from ..components.errors import AdapterError, LoraError, TextualInversionError
from ..components.flux_ip_adapter import (
    load_flux_ip_adapters,
    read_flux_ip_adapter,
    set_flux_ip_adapter_scale,
    unload_flux_ip_adapters,
)

logger = logging.getLogger("diffblocks")

Source = str | os.PathLike | Mapping


def _per_adapter(value: Any, count: int, name: str) -> list:
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) == 1:
        values = values * count
    if len(values) != count:
        raise AdapterError(f"load_ip_adapter: {name} has {len(values)} entries for {count} adapters")
    return values


class PipelineLoader:
    """Loads adapters into a :class:`~diffblocks.modular_pipelines.ModularPipeline`'s components.

    ``pipe.loader`` returns one; it keeps no state of its own (what is loaded lives in the components).
    """

    def __init__(self, pipeline):
        self.pipeline = pipeline

    # --- IP-Adapter ------------------------------------------------------------------------------------
    def load_ip_adapter(
        self,
        pretrained_model_name_or_path_or_dict: Source | Sequence[Source],
        subfolder: str | Sequence[str] | None = None,
        weight_name: str | Sequence[str] | None = None,
        image_encoder_folder: str | None = "image_encoder",
        image_encoder: Any = None,
        revision: str | None = None,
    ) -> None:
        """Load one IP-Adapter, or several used together (lists of sources / subfolders / weight names).

        Reads the original checkpoint layout (``image_proj`` + ``ip_adapter``, ``.bin`` or ``.safetensors``),
        installs the adapters in the UNet (replacing adapters loaded before), sets their scale to 1.0, and,
        when the pipeline has an empty ``image_encoder`` component, loads a ``CLIPVisionModelWithProjection``
        from ``image_encoder_folder`` of the first source (inside ``subfolder`` when the folder name has no
        ``/``), as diffusers does. A ``feature_extractor`` created from config is resized to the encoder's
        image size.

        Args:
            pretrained_model_name_or_path_or_dict: A folder, a Hub repo id, or a state dict; or a list of them.
            subfolder: Where the weights are inside the repo (e.g. ``"models"``, ``"sdxl_models"``).
            weight_name: The weights file (e.g. ``"ip-adapter_sdxl.bin"``); a list for several adapters.
            image_encoder_folder: The image encoder's folder; None to load none (then give
                ``ip_adapter_embeds`` when running, or an ``image_encoder``).
            image_encoder: An image encoder to use instead of loading one.
            revision: Hub revision.

        Raises:
            MissingFileError: a weights file is not there.
            AdapterError: a checkpoint is not in the IP-Adapter layout (the message names the keys expected),
                does not fit the UNet, or no image encoder can be found (the message says how to give one).
        """
        model = self._ip_model()
        flux = model is not self.pipeline.components.get("unet")
        sources = pretrained_model_name_or_path_or_dict
        count = max(len(v) if isinstance(v, (list, tuple)) else 1 for v in (sources, subfolder, weight_name))
        sources = _per_adapter(sources, count, "pretrained_model_name_or_path_or_dict")
        subfolders = _per_adapter(subfolder, count, "subfolder")
        weight_names = _per_adapter(weight_name, count, "weight_name")
        read = read_flux_ip_adapter if flux else read_ip_adapter
        checkpoints = [read(src, name, sub, revision) for src, sub, name in zip(sources, subfolders, weight_names)]
        self._fill_image_encoder(sources[0], subfolders[0], image_encoder_folder, image_encoder, revision, model)
        (load_flux_ip_adapters if flux else load_ip_adapters)(model, checkpoints)
        self._fit_feature_extractor()

    def set_ip_adapter_scale(self, scale) -> None:
        """Scale of the loaded IP-Adapters: a number, a per-block dict (``{"down": {"block_2": [0.0, 1.0]},
        "up": ...}``; unnamed blocks get 0.0) or a list of those, one per adapter.
        See :func:`diffblocks.components.ip_adapter.set_ip_adapter_scale`."""
        model = self._ip_model()
        if model is self.pipeline.components.get("unet"):
            set_ip_adapter_scale(model, scale)
        else:
            set_flux_ip_adapter_scale(model, scale)

    def unload_ip_adapter(self) -> None:
        """Remove the IP-Adapters: the UNet gets its processors and config back, and the ``image_encoder``
        component is emptied (as diffusers does)."""
        model = self._ip_model()
        (unload_ip_adapters if model is self.pipeline.components.get("unet") else unload_flux_ip_adapters)(model)
        if "image_encoder" in self.pipeline.component_names:
            self.pipeline.unload_components("image_encoder")

    # --- FLUX.1 Redux --------------------------------------------------------------------------------------
    def load_redux(self, repo_or_path: str | os.PathLike, revision: str | None = None) -> None:
        """Load FLUX.1 Redux into a pipeline with its step (``presets.flux.REDUX_BLOCKS``): the SigLIP image
        encoder, its image processor and the embedder, from ``image_encoder/``, ``feature_extractor/`` and
        ``image_embedder/`` of a folder or Hub repo (``black-forest-labs/FLUX.1-Redux-dev``'s layout). Nothing
        changes unless all three load.

        Raises:
            AdapterError: the pipeline has no Redux step.
            ComponentLoadError: a part is missing or unreadable (the message names it).
        """
        names = ("image_encoder", "feature_extractor", "image_embedder")
        lacking = [name for name in names if name not in self.pipeline.component_names]
        if lacking:
            raise AdapterError(f"load_redux: this pipeline has no FLUX.1 Redux step (no {', '.join(lacking)} "
                               "component); build it from presets.flux.REDUX_BLOCKS")
        loaded = {}
        for name in names:
            spec = self.pipeline.get_component_spec(name).copy()
            spec.repo, spec.subfolder, spec.revision = str(repo_or_path), name, revision
            loaded[name] = spec.load()
        self.pipeline.update_components(**loaded)

    # --- LoRA ----------------------------------------------------------------------------------------------
    def load_lora_weights(self, repo_or_path: Source, weight_name: str | None = None,
                          adapter_name: str | None = None) -> str:
        """Load a LoRA into the UNet (or FLUX.1's transformer) and the text encoder(s); it becomes the active
        adapter, at weight 1.0.

        Reads diffusers / PEFT files (``lora_A`` / ``lora_B``, or the older ``lora.down`` / ``lora.up``) and kohya /
        A1111 files (``lora_unet_...lora_down.weight`` with ``.alpha``, LoCon conv layers, SDXL's original block
        names, FLUX.1's original names with fused q/k/v), ``.safetensors`` or ``.bin`` (read with
        ``weights_only``). Every key is matched first: a LoRA that does not fit changes nothing.

        Args:
            repo_or_path: A folder, a Hub repo id, a file, or a state dict.
            weight_name: The file in the folder or repo (default ``pytorch_lora_weights.safetensors``).
            adapter_name: The adapter's name (default ``default_<n>``).

        Returns:
            The adapter's name.

        Raises:
            LoraError: keys that fit no module (the message names the first ones), or a taken adapter name.
        """
        from ..components.lora import load_lora

        models = self._lora_models()
        skip = tuple(n for n in ("text_encoder", "text_encoder_2") if n not in self.pipeline.component_names)
        return load_lora(models, repo_or_path, weight_name, adapter_name, skip=skip)

    def set_adapters(self, adapter_names: str | Sequence[str], weights: Any = None) -> None:
        """Activate exactly ``adapter_names``, each at its weight: a number, one per adapter, or a dict per
        component (``{"unet": 0.8, "text_encoder": 0.5}``; components left out get 1.0)."""
        from ..components.lora import set_weights
        from ..components.lora.scales import weights_per_component

        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        models = self._lora_models(loaded_only=True)
        loaded = self._lora_names(models)
        unknown = [n for n in names if n not in loaded]
        if unknown:
            raise LoraError.unknown_adapters(unknown, loaded)
        for component, component_weights in weights_per_component(names, weights, list(models)).items():
            set_weights(models[component], component_weights)

    def get_active_adapters(self) -> list[str]:
        """The active LoRA adapters (of the first model that has any)."""
        from ..components.lora import active_adapters

        return next((a for a in map(active_adapters, self._lora_models(loaded_only=True).values()) if a), [])

    def get_list_adapters(self) -> dict[str, list[str]]:
        """The loaded LoRA adapters per component."""
        from ..components.lora import loaded_adapters

        return {n: loaded_adapters(m) for n, m in self._lora_models(loaded_only=True).items()}

    def enable_lora(self) -> None:
        """Switch the LoRA layers back on (after :meth:`disable_lora`)."""
        self._each_lora_model("enable", True)

    def disable_lora(self) -> None:
        """Compute as without LoRA, keeping the adapters loaded (a fused LoRA is unfused first)."""
        self._each_lora_model("enable", False)

    def fuse_lora(self, lora_scale: float = 1.0) -> None:
        """Add the active adapters into the weights (times ``lora_scale``): steps then cost what they cost
        without LoRA. The original weights are kept; :meth:`unfuse_lora` restores them exactly."""
        self._each_lora_model("fuse", lora_scale)

    def unfuse_lora(self) -> None:
        """Give fused layers their original weights back (bitwise)."""
        self._each_lora_model("unfuse")

    def delete_adapters(self, adapter_names: str | Sequence[str]) -> None:
        """Remove the named adapters from every model."""
        names = [adapter_names] if isinstance(adapter_names, str) else list(adapter_names)
        loaded = self._lora_names(self._lora_models(loaded_only=True))
        unknown = [n for n in names if n not in loaded]
        if unknown:
            raise LoraError.unknown_adapters(unknown, loaded)
        self._each_lora_model("delete_adapters", names)

    def unload_lora_weights(self) -> None:
        """Remove every LoRA: the models get their original modules and weight tensors back."""
        self._each_lora_model("unload")

    def _lora_models(self, loaded_only: bool = False) -> dict:
        from ..components.lora import loaded_adapters

        components = self.pipeline.components
        models = {n: components.get(n) for n in ("unet", "transformer", "text_encoder", "text_encoder_2")
                  if components.get(n) is not None}
        if not models:
            raise LoraError.no_model()
        return {n: m for n, m in models.items() if loaded_adapters(m)} if loaded_only else models

    @staticmethod
    def _lora_names(models: Mapping) -> list[str]:
        from ..components.lora import loaded_adapters

        return list(dict.fromkeys(name for model in models.values() for name in loaded_adapters(model)))

    def _each_lora_model(self, operation: str, *args) -> None:
        from ..components import lora

        for model in self._lora_models().values():
            getattr(lora, operation)(model, *args)

    # --- textual inversion -----------------------------------------------------------------------------
    def load_textual_inversion(self, path_or_repo: Source | Any, token: str | None = None,
                               weight_name: str | None = None) -> list[str]:
        """Add a textual-inversion embedding as a new token of the tokenizer(s) and text encoder(s).

        Reads A1111 ``.pt`` / ``.safetensors`` embeddings (``string_to_param``, ``emb_params``), SDXL embeddings
        (``clip_l`` / ``clip_g``, one per text encoder) and diffusers' ``learned_embeds.bin`` / ``.safetensors``.
        A multi-vector embedding becomes ``token``, ``token_1``, ...; prompts naming ``token`` are expanded.

        Args:
            path_or_repo: A folder, a Hub repo id, a file, a state dict or a tensor (then ``token`` is needed).
            token: The token to use in prompts (default: the one the file names).
            weight_name: The file in the folder or repo (default ``learned_embeds.safetensors`` / ``.bin``).

        Returns:
            The tokens added.

        Raises:
            TextualInversionError: not an embedding, the token is taken, or the vectors do not fit the encoder.
        """
        from ..components.textual_inversion import load_textual_inversion

        return load_textual_inversion(self._text_pairs(), path_or_repo, token, weight_name)

    def unload_textual_inversion(self) -> None:
        """Remove every loaded embedding: tokenizers and embedding tables are exactly as before."""
        from ..components.textual_inversion import unload_textual_inversion

        unload_textual_inversion([encoder for _, encoder in self._text_pairs()])

    def _text_pairs(self) -> list[tuple]:
        components = self.pipeline.components
        pairs = [(components.get(t), components.get(e)) for t, e in
                 (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))]
        if pairs[0][0] is None or pairs[0][1] is None:
            raise TextualInversionError.no_encoder("the pipeline's tokenizer or text_encoder is not loaded")
        return [p for p in pairs if p[0] is not None and p[1] is not None]

    # --- helpers ---------------------------------------------------------------------------------------
    def _ip_model(self):
        """The model IP-Adapters go into: the UNet, or FLUX.1's transformer."""
        components = self.pipeline.components
        model = components.get("unet") if components.get("unet") is not None else components.get("transformer")
        if model is None:
            raise AdapterError("IP-Adapters go into the UNet (or FLUX.1's transformer), which is not loaded: call "
                               "pipe.load_components() first")
        return model

    def _fill_image_encoder(self, source, subfolder, folder, image_encoder, revision, model) -> None:
        pipe = self.pipeline
        if "image_encoder" not in pipe.component_names:
            if image_encoder is not None:
                raise AdapterError("this pipeline has no image_encoder component; add an IP-Adapter block first")
            return
        if image_encoder is not None:
            pipe.update_components(image_encoder=image_encoder)
            return
        if pipe.components.get("image_encoder") is not None or folder is None:
            if folder is None:
                logger.info("load_ip_adapter: no image encoder loaded (image_encoder_folder=None); "
                            "pass ip_adapter_embeds when running")
            return
        if isinstance(source, Mapping):
            raise AdapterError.missing_image_encoder("the adapter was given as a state dict, so there is no folder to load an "
                                              "image encoder from")
        location = folder if "/" in folder else str(PurePosixPath(subfolder or "", folder))
        if try_resolve_file(source, "config.json", subfolder=location, revision=revision) is None:
            raise AdapterError.missing_image_encoder(f"there is no image encoder in {source}/{location}")
        from transformers import CLIPVisionModelWithProjection

        from ..components.spec import ComponentSpec

        spec = ComponentSpec("image_encoder", CLIPVisionModelWithProjection, repo=str(source), subfolder=location,
                             revision=revision)
        pipe.update_components(image_encoder=spec.load(torch_dtype=model.dtype).to(model.device))

    def _fit_feature_extractor(self) -> None:
        """Give a feature extractor created from config (not loaded from a repo) the encoder's image size."""
        pipe = self.pipeline
        encoder = pipe.components.get("image_encoder")
        if "feature_extractor" not in pipe.component_names or encoder is None:
            return
        spec = pipe.get_component_spec("feature_extractor")
        size = encoder.config.image_size
        current = pipe.components.get("feature_extractor")
        crop = getattr(current, "crop_size", None)
        height = crop.get("height") if isinstance(crop, Mapping) else getattr(crop, "height", None)
        if spec.default_creation_method == "from_config" and spec.type_hint is not None and height != size:
            pipe.update_components(feature_extractor=spec.create(size=size, crop_size=size))
