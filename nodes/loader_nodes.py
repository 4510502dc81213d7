"""Nodes that bring things in: ``LoadComponents`` (a model folder, Hub id or the embedded model, through the
executor's ComponentsManager so that every workflow shares one copy), ``LoadFluxTransformer`` (a FLUX.1 transformer
from one file, shared the same way), ``LoadVAE`` (a VAE file), ``LoadCheckpoint`` (an SD 1.x / 2.x / SDXL checkpoint
file as A1111 and ComfyUI keep them) and ``LoadImage`` (an uploaded artifact)."""

from __future__ import annotations

from typing import Any, Callable, Iterable

from .bundle import ComponentsBundle
from .model_files import model_input
from .node_type import NodeInput, NodeOutput, NodeType, RunContext
from .values import artifact_ref

DTYPES = ("auto", "float32", "float16", "bfloat16")
ARTIFACT_SCHEMA = {"type": "object", "properties": {"artifact": {"type": "string", "pattern": "^[0-9a-f]{64}$"}},
                   "required": ["artifact"], "description": "an uploaded image: {\"artifact\": sha256}"}


class LoadComponents(NodeType):
    name = "LoadComponents"
    category = "loaders"
    description = ("Load a model's components (a folder, a Hub id, or 'embedded' for the shipped digits model) "
                   "into the shared ComponentsManager; outputs each component and the bundle.")
    open_outputs = True

    def __init__(self, component_names: Iterable[str]):
        self.inputs = {
            "repo": NodeInput(model_input({"type": "string", "default": "embedded", "minLength": 1,
                                           "description": "model folder, Hub repo id, or 'embedded'"}, "diffusers"),
                              required=True),
            "dtype": NodeInput({"type": "string", "enum": list(DTYPES), "default": "auto",
                                "description": "weights dtype ('auto': as the model is stored)"}),
            "without": NodeInput({"type": "array", "items": {"type": "string", "minLength": 1}, "default": [],
                                  "description": "components not to load, as ['transformer']: another loader brings "
                                                 "them (LoadFluxTransformer, a file), so they never take memory here"}),
        }
        self.outputs = {"components": NodeOutput("components")}
        self.outputs.update({name: NodeOutput(socket) for name, socket in component_names})

    def check_value(self, name: str, value: Any) -> str | None:
        if name == "repo" and not (isinstance(value, str) and value):
            return f"must be a non-empty string, got {value!r}"
        if name == "dtype" and value not in DTYPES:
            return f"must be one of {', '.join(DTYPES)}, got {value!r}"
        if name == "without" and not (isinstance(value, list) and all(isinstance(v, str) and v for v in value)):
            return f"must be a list of component names, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        import torch

        from ..components.errors import ComponentNotFoundError
        from ..modular_pipelines.pipeline import ModularPipeline
        from ..presets import embedded_model_path

        repo = values.get("repo") or "embedded"
        source = str(embedded_model_path()) if repo == "embedded" else repo
        pipe = ModularPipeline.from_pretrained(source, trust_remote_code=ctx.allow_remote_code,
                                               components_manager=ctx.components_manager, collection=f"nodes:{repo}")
        without = values.get("without") or []
        loadable = [name for name in pipe.pretrained_component_names if pipe.get_component_spec(name).repo is not None]
        for name in without:  # before anything loads
            if name not in loadable:
                raise ComponentNotFoundError.unknown_name(name, loadable, f"model '{repo}'", "without")
        dtype = values.get("dtype") or "auto"
        pipe.load_components([name for name in loadable if name not in without],
                             torch_dtype=None if dtype == "auto" else getattr(torch, dtype))
        if ctx.device != "cpu" and not _offloaded(ctx.components_manager):
            pipe.to(ctx.device)
        components = {name: c for name, c in pipe.components.items() if c is not None}
        bundle = ComponentsBundle(components, pipe.config, repo)
        return {"components": bundle, **components}


class LoadCheckpoint(LoadComponents):
    name = "LoadCheckpoint"
    description = ("Load an SD 1.x / 2.x / SDXL checkpoint file (one .safetensors or .ckpt with the UNet, VAE and text encoders, as "
                   "A1111 and ComfyUI keep them), with the configs, tokenizers and scheduler of its family's reference "
                   "repo (shipped: no download) or of the diffusers repo given; outputs each component and the bundle.")

    def __init__(self, component_names: Iterable[str]):
        super().__init__(component_names)
        self.inputs = {
            "file": NodeInput(model_input({"type": "string", "minLength": 1,
                                           "description": "the checkpoint file (.safetensors, .ckpt)"}, "checkpoints"),
                              required=True),
            "config": NodeInput(model_input({"type": "string", "default": "", "description": (
                "diffusers repo of its model (empty: its family's reference repo's, shipped)")}, "diffusers")),
            "dtype": self.inputs["dtype"],
        }

    def check_value(self, name: str, value: Any) -> str | None:
        if name == "file" and not (isinstance(value, str) and value):
            return f"must be a non-empty string, got {value!r}"
        if name == "config" and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return super().check_value(name, value)

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        import torch

        from ..components.checkpoints import config_repo, file_family
        from ..modular_pipelines.pipeline import ModularPipeline

        file, given, dtype = values["file"], values.get("config") or None, values.get("dtype") or "auto"
        repo = config_repo(file_family(file), given, file)
        pipe = ModularPipeline.from_pretrained(repo, components_manager=ctx.components_manager,
                                               collection=f"nodes:{file}")
        pipe.load_single_file(file, torch_dtype=None if dtype == "auto" else getattr(torch, dtype))
        if ctx.device != "cpu" and not _offloaded(ctx.components_manager):
            pipe.to(ctx.device)
        components = {name: c for name, c in pipe.components.items() if c is not None}
        return {"components": ComponentsBundle(components, pipe.config, file), **components}


def load_file_once(ctx: RunContext, name: str, file: str, source: str, load: Callable[[], Any]) -> Any:
    """The model ``load()`` reads from ``file``, found in the executor's ComponentsManager by ``source`` when that
    file was read before as it is now (else read and added there: a file saved again is read again), on the
    run's device."""
    from ..components.spec import LOAD_ID_ATTR
    from .keys import file_stamp

    load_id, manager = f"single-file:{source}@{file_stamp(file)}", ctx.components_manager
    model = manager.find_by_load_id(load_id) if manager is not None else None
    if model is None:
        model = load()
        object.__setattr__(model, LOAD_ID_ATTR, load_id)
        if manager is not None:
            manager.add(name, model, collection="nodes:single-file")
    if ctx.device != "cpu" and not _offloaded(manager):
        model.to(ctx.device)
    return model


def _offloaded(manager) -> bool:
    return manager is not None and getattr(manager, "offloader", None) is not None


class LoadFluxTransformer(NodeType):
    name = "LoadFluxTransformer"
    category = "loaders"
    description = ("A FLUX.1 transformer from one file (.safetensors, .sft; Black Forest Labs' layout: "
                   "flux1-dev.safetensors, a fine-tune, an fp8 copy; or owner/name/FILE on the Hub), or from an "
                   "all-in-one checkpoint (ComfyUI's flux1-dev-fp8.safetensors), into the shared ComponentsManager; "
                   "wire it into a FLUX preset's transformer, or give it a bundle (from LoadComponents 'without' its "
                   "own transformer) to put it in, for LoRAs to adapt.")

    def __init__(self):
        self.inputs = {
            "file": NodeInput(model_input({"type": "string", "default": "",
                                           "description": "the .safetensors or .sft file"}, "diffusion_models")),
            "checkpoint": NodeInput(model_input({"type": "string", "default": "", "description": (
                "or an all-in-one checkpoint whose transformer is read (its text encoders and VAE are not)")},
                "checkpoints")),
            "dtype": NodeInput({"type": "string", "enum": list(DTYPES), "default": "auto",
                                "description": "weights dtype ('auto': torch's default; fp8 files need one to run)"}),
            "components": NodeInput({"description": "a FLUX.1 bundle the transformer goes into (in place of its "
                                                    "own, if it has one)"}, socket="components"),
        }
        self.outputs = {"transformer": NodeOutput("FluxTransformer2DModel"), "components": NodeOutput("components")}

    def check_value(self, name: str, value: Any) -> str | None:
        if name in ("file", "checkpoint") and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        if name == "dtype" and value not in DTYPES:
            return f"must be one of {', '.join(DTYPES)}, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        import torch

        from ..components.errors import InputValueError, MissingInputError
        from ..components.models import FluxTransformer2DModel

        dtype, bundle = values.get("dtype") or "auto", values.get("components")
        given = [values[name] for name in ("file", "checkpoint") if values.get(name)]
        if not given:
            raise MissingInputError.either("a FLUX.1 transformer", "file", "checkpoint", "a transformer file "
                                           "(diffusion_models), or an all-in-one checkpoint holding one (checkpoints)")
        if len(given) > 1:
            raise InputValueError.conflict(["file", "checkpoint"], None, self.name, "give one: a transformer file, or "
                                           "an all-in-one checkpoint holding one")
        file, torch_dtype = given[0], None if dtype == "auto" else getattr(torch, dtype)
        transformer = load_file_once(ctx, "transformer", file, f"{file}|{dtype}", lambda: (
            FluxTransformer2DModel.from_single_file(file, torch_dtype=torch_dtype)))
        return {"transformer": transformer, "components": None if bundle is None else ComponentsBundle(
            {**bundle.components, "transformer": transformer}, bundle.config, bundle.source)}


class LoadVAE(NodeType):
    name = "LoadVAE"
    category = "loaders"
    description = ("A VAE from one file (.safetensors, .ckpt, .pt; as A1111 and ComfyUI keep them: vae-ft-mse-840000-ema-pruned, "
                   "sdxl_vae, FLUX.1's ae; or diffusers' layout), with the config of the bundle's VAE (or of a model "
                   "repo's); outputs it, and the bundle with it in place of the bundle's.")

    def __init__(self):
        self.inputs = {
            "file": NodeInput(model_input({"type": "string", "minLength": 1,
                                           "description": "the .safetensors, .ckpt or .pt file"}, "vae"), required=True),
            "components": NodeInput({"description": "the bundle whose VAE the file replaces, and whose VAE config "
                                                    "(its latents' scaling) goes with it"}, socket="components"),
            "config": NodeInput(model_input({"type": "string", "default": "", "description": (
                "without a bundle: the model's folder or Hub repo, whose VAE config goes with the file")}, "diffusers")),
        }
        self.outputs = {"vae": NodeOutput("AutoencoderKL"), "components": NodeOutput("components")}

    def check_value(self, name: str, value: Any) -> str | None:
        if name == "file" and not (isinstance(value, str) and value):
            return f"must be a non-empty string, got {value!r}"
        if name == "config" and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        import json

        from ..components.errors import MissingInputError
        from ..components.files import is_weights_file
        from ..components.models import AutoencoderKL

        file, config, bundle = values["file"], values.get("config") or None, values.get("components")
        if config is None and bundle is not None and bundle.components.get("vae") is not None:
            config = {k: v for k, v in dict(bundle.components["vae"].config).items() if not k.startswith("_")}
        elif config is None and bundle is not None and is_weights_file(bundle.source):
            # a checkpoint shared without its VAE, read with the family's shipped configs: theirs
            from ..components.checkpoints import config_repo, file_family

            config = config_repo(file_family(bundle.source), None, bundle.source)
        if config is None:
            raise MissingInputError.either("a VAE file", "config", "components", "the config of a model's VAE goes "
                                           "with the file (its latents' scaling): a folder or Hub repo, or a bundle "
                                           "with a VAE")
        source = f"{file}|{config if isinstance(config, str) else json.dumps(config, sort_keys=True, default=str)}"
        vae = load_file_once(ctx, "vae", file, source, lambda: AutoencoderKL.from_single_file(file, config=config))
        return {"vae": vae, "components": None if bundle is None else ComponentsBundle(
            {**bundle.components, "vae": vae}, bundle.config, bundle.source)}


class LoadImage(NodeType):
    name = "LoadImage"
    category = "loaders"
    description = "An uploaded image (an artifact reference) as a PIL image."

    def __init__(self):
        self.inputs = {"image": NodeInput(ARTIFACT_SCHEMA, required=True)}
        self.outputs = {"image": NodeOutput("image")}

    def check_value(self, name: str, value: Any) -> str | None:
        return None if artifact_ref(value) else "must be an artifact reference {\"artifact\": sha256 hex}"

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        return {"image": values["image"]}  # the executor resolved the reference to the image
