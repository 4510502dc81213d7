"""Nodes that add to a model: ``LoadControlNet`` / ``LoadFluxControlNet`` (a ControlNet to wire into the ControlNet
blocks), ``LoadIPAdapter`` (a components bundle whose UNet carries IP-Adapters) and ``LoadRedux`` (a bundle with
FLUX.1 Redux's image encoder, processor and embedder).

An adapter changes the UNet it goes into, and the UNet in the ComponentsManager is shared by every workflow, so
``LoadIPAdapter`` installs the adapters into a copy of the UNet's modules that shares its weights (no memory for
weights; the original UNet, and every workflow reading it, is left as it was).
"""

from __future__ import annotations

import copy
import os
from typing import Any

from ..components.files import WEIGHTS_SUFFIXES
from .bundle import ComponentsBundle
from .loader_nodes import load_file_once
from .model_files import model_input
from .node_type import NodeInput, NodeOutput, NodeType, RunContext

STRING = {"type": "string"}


def _load_shared(ctx: RunContext, spec) -> Any:
    """The component of ``spec`` from the manager when already loaded there, else loaded and added."""
    manager = ctx.components_manager
    found = manager.find_by_load_id(spec.load_id) if manager is not None else None
    if found is not None:
        return found
    component = spec.load()
    if manager is not None:
        manager.add(spec.name, component, collection="nodes:adapters")
    return component


class LoadControlNet(NodeType):
    name = "LoadControlNet"
    category = "loaders"
    model_class = "ControlNetModel"  # in diffblocks.components.models; also the output's socket
    description = "Load a ControlNet (a folder or Hub id) into the shared ComponentsManager."

    def __init__(self):
        repo = model_input({**STRING, "minLength": 1, "description": (
            "ControlNet folder or Hub repo id, or a file (.safetensors, .pth) as A1111 and ComfyUI keep them")},
            "controlnet")
        self.inputs = {"repo": NodeInput(repo, required=True),
                       "subfolder": NodeInput({**STRING, "default": "", "description": "folder inside the repo"})}
        if self.model_class == "ControlNetModel":
            self.inputs["config"] = NodeInput(model_input({**STRING, "default": "", "description": (
                "for a file: the base model's repo, whose UNet config describes the ControlNet's encoder (empty: "
                "the shipped configs of the family it is for)")}, "diffusers"))
        self.outputs = {"controlnet": NodeOutput(self.model_class)}

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        from ..components import models
        from ..components.spec import ComponentSpec

        file = values["repo"]
        if file.lower().endswith(WEIGHTS_SUFFIXES) and "config" in self.inputs:
            from ..components.families import controlnet_config_repo

            config = values.get("config") or controlnet_config_repo(file)
            return {"controlnet": load_file_once(ctx, "controlnet", file, f"{file}|{config}", lambda: (
                models.ControlNetModel.from_single_file(file, config=config)))}
        if file.lower().endswith(WEIGHTS_SUFFIXES):  # FLUX.1's: its config read off the file
            return {"controlnet": load_file_once(ctx, "controlnet", file, file, lambda: (
                getattr(models, self.model_class).from_single_file(file)))}
        spec = ComponentSpec("controlnet", getattr(models, self.model_class), repo=values["repo"],
                             subfolder=values.get("subfolder") or None)
        controlnet = _load_shared(ctx, spec)
        if ctx.device != "cpu":
            controlnet.to(ctx.device)
        return {"controlnet": controlnet}


class LoadFluxControlNet(LoadControlNet):
    name = "LoadFluxControlNet"
    model_class = "FluxControlNetModel"
    description = ("Load a FLUX.1 ControlNet (InstantX, Union or XLabs; a folder or Hub id, or one file as ComfyUI "
                   "keeps them: XLabs' flux-canny-controlnet-v3.safetensors) into the shared ComponentsManager.")


class LoadRedux(NodeType):
    name = "LoadRedux"
    category = "loaders"
    description = ("FLUX.1 Redux (a folder or Hub id in black-forest-labs/FLUX.1-Redux-dev's layout): its SigLIP image "
                   "encoder, image processor and embedder added to the bundle, for preset:flux-redux.")

    def __init__(self):
        self.inputs = {
            "components": NodeInput({"description": "the FLUX.1 bundle to add Redux to"}, required=True,
                                    socket="components"),
            "repo": NodeInput({**STRING, "minLength": 1, "description": "Redux folder or Hub repo id"}, required=True),
        }
        self.outputs = {"components": NodeOutput("components")}

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        from ..blocks.flux.redux import FEATURE_EXTRACTOR, IMAGE_EMBEDDER, IMAGE_ENCODER

        bundle: ComponentsBundle = values["components"]
        parts = {}
        for spec in (IMAGE_ENCODER, IMAGE_EMBEDDER, FEATURE_EXTRACTOR):
            spec = spec.copy()
            spec.repo, spec.subfolder = values["repo"], spec.name
            if spec.name == "feature_extractor":  # no weights: nothing to share
                parts[spec.name] = spec.load()
                continue
            parts[spec.name] = _load_shared(ctx, spec)
            if ctx.device != "cpu":
                parts[spec.name].to(ctx.device)
        return {"components": ComponentsBundle({**bundle.components, **parts}, bundle.config, bundle.source)}


def weight_sharing_copy(module):
    """A copy of ``module``'s module tree whose parameters and buffers are the original's tensors."""
    shared = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    return copy.deepcopy(module, shared)


class LoadIPAdapter(NodeType):
    name = "LoadIPAdapter"
    category = "loaders"
    description = ("IP-Adapters for the bundle's UNet (original checkpoints, .bin or .safetensors: a file, as ComfyUI's "
                   "ipadapter folder keeps them, or a folder or Hub repo in IP-Adapter's layout), with the image "
                   "encoder from the adapter's repo or a CLIP vision file or folder; outputs the bundle with the "
                   "adapted UNet.")
    model = ("unet", "UNet2DConditionModel")  # the component that gets the adapter, and its socket
    default_encoder = ""

    def __init__(self):
        name = self.model[0]
        self.inputs = {
            "components": NodeInput({"description": f"the bundle whose {name} gets the adapter"}, required=True,
                                    socket="components"),
            "repo": NodeInput(model_input({**STRING, "minLength": 1, "description": (
                "the adapter's file (.safetensors, .bin), or a folder or Hub repo id with weight_name")}, "ipadapter"),
                required=True),
            "weight_name": NodeInput({**STRING, "default": "", "description": (
                "in a folder or repo: the weights file, e.g. ip-adapter_sd15.bin")}),
            "subfolder": NodeInput({**STRING, "default": "", "description": "where the weights are in the repo"}),
            "image_encoder_folder": NodeInput({**STRING, "default": "image_encoder",
                                               "description": "the image encoder's folder in the repo"}),
            "image_encoder": NodeInput(model_input({**STRING, "default": self.default_encoder, "description": (
                "a CLIP vision file (.safetensors), folder or Hub repo, in place of the repo's image encoder (an "
                "adapter file needs one)")}, "clip_vision")),
            "scale": NodeInput({"type": "number", "default": 1.0, "minimum": 0, "description": "adapter strength"}),
        }
        self.outputs = {"components": NodeOutput("components"), name: NodeOutput(self.model[1]),
                        "image_encoder": NodeOutput("CLIPVisionModelWithProjection")}

    def check_value(self, name: str, value: Any) -> str | None:
        if name == "scale" and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            return f"must be a number >= 0, got {value!r}"
        if name in ("repo", "weight_name", "subfolder", "image_encoder_folder", "image_encoder") and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return None

    def carrier(self):
        """A pipeline of the IP-Adapter step alone, whose loader puts the adapter in the model."""
        from ..blocks.stable_diffusion import StableDiffusionIPAdapterStep
        from ..modular_pipelines.pipeline import ModularPipeline

        return ModularPipeline(StableDiffusionIPAdapterStep())

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        from ..components.spec import LOAD_ID_ATTR, load_id_of

        name = self.model[0]
        bundle: ComponentsBundle = values["components"]
        if bundle.components.get(name) is None:
            raise ValueError(f"the bundle has no {name} ({self.model[1]}) for the adapter; it holds "
                             f"{', '.join(sorted(n for n, c in bundle.components.items() if c is not None))}")
        repo, weight_name, encoder_folder = self._weights(values, bundle)
        model = weight_sharing_copy(bundle.components[name])
        where = f"{repo}/{values.get('subfolder') or ''}/{weight_name}@{values.get('scale', 1.0)}"
        object.__setattr__(model, LOAD_ID_ATTR, f"{load_id_of(model) or 'memory'}+ip-adapter:{where}")
        encoder = self._encoder(ctx, values.get("image_encoder", self.default_encoder))
        carrier = self.carrier()
        carrier.update_components(**{name: model}, **{n: c for n, c in bundle.components.items()
                                                      if n in ("image_encoder", "feature_extractor") and c is not None})
        carrier.loader.load_ip_adapter(repo, subfolder=values.get("subfolder") or None, weight_name=weight_name,
                                       image_encoder_folder=encoder_folder, image_encoder=encoder or None)
        carrier.loader.set_ip_adapter_scale(float(values.get("scale", 1.0)))
        adapted = {n: c for n, c in carrier.components.items() if c is not None}
        return {"components": ComponentsBundle({**bundle.components, **adapted}, bundle.config, bundle.source),
                name: model, "image_encoder": adapted.get("image_encoder")}

    def _weights(self, values: dict[str, Any], bundle: ComponentsBundle) -> tuple[str, str, str | None]:
        """``(folder or Hub repo, weights file, image encoder folder)`` of the adapter. A file, as ComfyUI's ipadapter
        folder keeps them, comes without an encoder: it needs ``image_encoder``, or a bundle that has one."""
        from ..components.errors import MissingInputError

        repo, weight_name = values["repo"], values.get("weight_name") or None
        if os.path.isfile(repo):
            if not values.get("image_encoder", self.default_encoder) and bundle.components.get("image_encoder") is None:
                raise MissingInputError.needed("an IP-Adapter file", "image_encoder", "it comes without one; give a "
                                               "CLIP vision file as in ComfyUI's clip_vision folder, a folder or a "
                                               "Hub repo")
            return os.path.dirname(repo), os.path.basename(repo), None
        if weight_name is None:
            raise MissingInputError.needed("an IP-Adapter folder or repo", "weight_name", "the weights file in it")
        return repo, weight_name, values.get("image_encoder_folder", "image_encoder") or None

    @staticmethod
    def _encoder(ctx: RunContext, encoder: str):
        """The image encoder ``encoder`` names, on the run's device: a CLIP vision file (its config the shipped one of
        its size), a folder or a Hub repo, loaded once into the ComponentsManager; None when it names none."""
        from ..components.spec import ComponentSpec, LazyClass

        if not encoder:
            return None
        if os.path.isfile(encoder):
            from ..components.clip_vision_files import load_clip_vision_file

            return load_file_once(ctx, "image_encoder", encoder, encoder, lambda: load_clip_vision_file(encoder))
        model = _load_shared(ctx, ComponentSpec("image_encoder", LazyClass(
            "transformers", "CLIPVisionModelWithProjection"), repo=encoder))
        if ctx.device != "cpu":
            model.to(ctx.device)
        return model


class LoadFluxIPAdapter(LoadIPAdapter):
    name = "LoadFluxIPAdapter"
    description = ("XLabs' FLUX.1 IP-Adapter (ip_adapter.safetensors) for the bundle's transformer, with a CLIP vision "
                   "encoder (XLabs ships none: openai/clip-vit-large-patch14 by default); outputs the bundle with the "
                   "adapted transformer, for preset:flux-ip-adapter.")
    model = ("transformer", "FluxTransformer2DModel")
    default_encoder = "openai/clip-vit-large-patch14"

    def carrier(self):
        from ..blocks.flux.ip_adapter import FluxIPAdapterStep
        from ..modular_pipelines.pipeline import ModularPipeline

        return ModularPipeline(FluxIPAdapterStep())
