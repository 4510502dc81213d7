"""``pipe.loader``: adapters that change a pipeline's components in place (IP-Adapter).

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
from ..components.errors import AdapterError

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
        unet = self._unet()
        sources = pretrained_model_name_or_path_or_dict
        count = max(len(v) if isinstance(v, (list, tuple)) else 1 for v in (sources, subfolder, weight_name))
        sources = _per_adapter(sources, count, "pretrained_model_name_or_path_or_dict")
        subfolders = _per_adapter(subfolder, count, "subfolder")
        weight_names = _per_adapter(weight_name, count, "weight_name")
        checkpoints = [read_ip_adapter(src, name, sub, revision) for src, sub, name in zip(sources, subfolders, weight_names)]
        self._fill_image_encoder(sources[0], subfolders[0], image_encoder_folder, image_encoder, revision, unet)
        load_ip_adapters(unet, checkpoints)
        self._fit_feature_extractor()

    def set_ip_adapter_scale(self, scale) -> None:
        """Scale of the loaded IP-Adapters: a number, a per-block dict (``{"down": {"block_2": [0.0, 1.0]},
        "up": ...}``; unnamed blocks get 0.0) or a list of those, one per adapter.
        See :func:`diffblocks.components.ip_adapter.set_ip_adapter_scale`."""
        set_ip_adapter_scale(self._unet(), scale)

    def unload_ip_adapter(self) -> None:
        """Remove the IP-Adapters: the UNet gets its processors and config back, and the ``image_encoder``
        component is emptied (as diffusers does)."""
        unload_ip_adapters(self._unet())
        if "image_encoder" in self.pipeline.component_names:
            self.pipeline.unload_components("image_encoder")

    # --- helpers ---------------------------------------------------------------------------------------
    def _unet(self):
        pipe = self.pipeline
        unet = pipe.components.get("unet")
        if unet is None:
            raise AdapterError("IP-Adapters go into the UNet, which is not loaded: call pipe.load_components() first")
        return unet

    def _fill_image_encoder(self, source, subfolder, folder, image_encoder, revision, unet) -> None:
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
        pipe.update_components(image_encoder=spec.load(torch_dtype=unet.dtype).to(unet.device))

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
