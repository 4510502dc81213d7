"""A block as a node: its declared inputs are widgets or sockets, its expected components are sockets (filled
from the ``components`` bundle when not wired), its declared outputs are the node's outputs.

Runs as ``ModularPipeline.__call__`` runs the same block: the given inputs are checked against every
declaration, each run gets its own scheduler and guider copies (``CallComponents``), which it outputs as it
left them (wire ``scheduler`` from the timesteps node onward, as one pipeline call shares it), its own stop signal,
and the loop driver's progress bar and step callback become ``node.progress`` and ``node.preview`` events.
``seed`` stands in for ``generator``; a node that takes a generator also outputs it, advanced by the block, so
wiring it onward continues the same random stream, as one pipeline call would.
"""

from __future__ import annotations

from typing import Any, get_origin

from ..components.errors import ComponentTypeError, DiffblocksError, InputTypeError
from ..modular_pipelines.block import run_block
from ..modular_pipelines.call import CallComponents, check_given_inputs, check_ready, check_required_inputs
from ..modular_pipelines.loop import DRIVER_INPUTS
from ..modular_pipelines.checks import check_input_type
from ..modular_pipelines.schema import input_schema
from ..modular_pipelines.state import PipelineState
from .bundle import ComponentsBundle, NodeBinding, component_socket
from .node_type import NodeInput, NodeOutput, NodeType, RunContext
from .sockets import input_socket, members, output_socket
from .values import artifact_ref, clone_generator, generator_from_seed

STATEFUL = ("scheduler", "guider")
HIDDEN = {p.name for p in DRIVER_INPUTS}  # callables and their options: not a value a workflow can hold
SEED = NodeInput({"type": "integer", "minimum": 0, "maximum": 2**63 - 1,
                  "description": "random seed; stands in for generator"})
COMPONENTS = NodeInput({"description": "the components bundle (LoadComponents); fills every component not wired"},
                       socket="components")


class BlockNode(NodeType):
    """The node type of one block (class or composed preset), named ``name``."""

    def __init__(self, name: str, make_block, category: str, description: str | None = None, version: str | None = None):
        self.name = name
        self.block = make_block()
        self.category = category
        self.description = description or _description(self.block)
        self._source_version = version  # computed on first use: reading sources is the slow part of the catalog
        self._params = {p.name: p for p in self.block.inputs if p.name is not None and p.name not in HIDDEN}
        self.takes_generator = "generator" in self._params
        self.inputs = self._declared_inputs()
        self.outputs = {p.name: NodeOutput(output_socket(p.type_hint)) for p in self.block.intermediate_outputs}
        if self.takes_generator:
            self.outputs["generator"] = NodeOutput("generator")
        self.component_names = [c.name for c in self.block.expected_components]
        # a scheduler or guider leaves the block changed (timesteps set, steps taken): the node outputs its
        # copy, so the next block continues from it as it would in one pipeline call
        self.stateful = [c.name for c in self.block.expected_components if component_socket(c) in STATEFUL]
        self.outputs.update({name: NodeOutput(component_socket(spec)) for spec in self.block.expected_components
                             if (name := spec.name) in self.stateful and name not in self.outputs})

    def _declared_inputs(self) -> dict[str, NodeInput]:
        schema = input_schema(self.block)
        properties, required = schema.get("properties", {}), set(schema.get("required", []))
        inputs: dict[str, NodeInput] = {}
        for name, param in self._params.items():
            socket = input_socket(param.type_hint)
            inputs[name] = NodeInput(properties.get(name, {}), name in required, socket)
        if self.takes_generator:
            inputs["generator"] = NodeInput({"description": "a generator wired from an earlier node"},
                                            socket="generator")
            inputs["seed"] = SEED
        for spec in self.block.expected_components:
            inputs[spec.name] = NodeInput({"description": spec.description or f"the {spec.name} component"},
                                          socket=component_socket(spec))
        inputs["components"] = COMPONENTS
        return inputs

    def check_value(self, name: str, value: Any) -> str | None:
        socket = self.inputs[name].socket
        if socket == "image" and isinstance(value, dict):
            return None if artifact_ref(value) else "an image constant must be an artifact reference {\"artifact\": sha256}"
        if name == "seed":
            ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
            return None if ok else f"must be an integer from 0 to 2**63-1, got {value!r}"
        param = self._params.get(name)
        if param is None:
            return f"takes no constant value (socket '{socket}'): wire an output into it"
        try:
            check_input_type(param, from_json(param, value), None, type(self.block).__name__)
        except InputTypeError as err:  # InputValueError is one too
            return str(err)
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        bundle: ComponentsBundle | None = values.pop("components", None)
        components = dict(bundle.components) if bundle is not None else {}
        for name in self.component_names:
            if values.get(name) is not None:
                components[name] = values.pop(name)
            values.pop(name, None)
        self._check_family(components, bundle)
        self._check_models(components, bundle, values)
        self._check_adapters(components, values)
        config = {c.name: c.default for c in self.block.expected_configs}
        if bundle is not None:
            config.update({k: v for k, v in bundle.config.items() if k in config})
        _create_missing(self.block, components)
        values = {name: from_json(self._params[name], v) if name in self._params else v for name, v in values.items()}
        seed = values.pop("seed", None)
        if values.get("generator") is not None:
            values["generator"] = clone_generator(values["generator"])
        elif seed is not None:
            values["generator"] = generator_from_seed(seed)
        if "step_callback" in self.block.input_names:
            values["step_callback"] = ctx.extra.get("step_callback")
            ctx.extra["vae"] = components.get("vae")  # previews in this VAE's colours
        inputs = {k: v for k, v in values.items() if v is not None}
        check_given_inputs(self.block, inputs)
        check_required_inputs(self.block, inputs)
        call = CallComponents(NodeBinding(components, config, ctx), ctx.stop)
        check_ready(self.block, call, inputs, ctx.node)
        state = PipelineState()
        for name, value in inputs.items():
            state.set(name, value)
        run_block(self.block, call, state, ctx.node)
        produced = {n: state.values[n] for n in self.outputs if n in state.values and n != "generator"}
        produced.update({name: getattr(call, name) for name in self.stateful if getattr(call, name, None) is not None})
        if self.takes_generator and inputs.get("generator") is not None:
            produced["generator"] = clone_generator(state.values["generator"])
        return produced


    def _check_models(self, components: dict[str, Any], bundle: ComponentsBundle | None, values: dict) -> None:
        """A preset given a bundle without a model a checkpoint file holds (one shared without its VAE) says so
        before any work, rather than after the denoising loop; latents need no VAE."""
        from ..components.checkpoints import MODEL_PARTS
        from ..components.errors import ComponentLoadError

        if self.name == self.name.removeprefix("preset:") or bundle is None:
            return
        for name in sorted(MODEL_PARTS & set(self.component_names)):
            if components.get(name) is None and not (name == "vae" and values.get("output_type") == "latent"):
                raise ComponentLoadError.not_in_bundle(self.name.removeprefix("preset:"), name, bundle.source)

    def _check_adapters(self, components: dict[str, Any], values: dict) -> None:
        """A control image with no ControlNet wired, or a reference image with no IP-Adapter loaded, says which
        node to wire before any work (the steps themselves find out after the prompt is encoded, in the Python
        API's terms)."""
        from ..components.errors import MissingInputError

        takes = set(self.component_names)
        if values.get("control_image") is not None and "controlnet" in takes and components.get("controlnet") is None:
            raise MissingInputError.needed(f"{self.name} given a 'control_image'", "controlnet",
                                           "wire a Load ControlNet node's 'controlnet' into it")
        if (values.get("ip_adapter_image") is not None and values.get("ip_adapter_embeds") is None
                and "image_encoder" in takes and components.get("image_encoder") is None):
            raise MissingInputError.needed(f"{self.name} given an 'ip_adapter_image'", "components",
                                           "pass them through a Load IP Adapter node first: they carry no IP-Adapter")

    def _check_family(self, components: dict[str, Any], bundle: ComponentsBundle | None) -> None:
        """A preset given another family's models (an SDXL checkpoint into an SD 1.x preset) says so, before any
        work, rather than failing deep inside the UNet."""
        preset = self.name.removeprefix("preset:")
        takes, _, task = preset.partition("-")
        if preset == self.name or takes not in FAMILIES:  # a block, or a preset of no known family
            return
        given = model_family(components)
        if given is None or given == takes:
            return
        from .catalog import node_types

        instead = f"{given}-{task}" if f"preset:{given}-{task}" in node_types() else None
        raise ComponentTypeError.other_family(preset, bundle.source if bundle else "", FAMILIES[given],
                                              FAMILIES[takes], instead)


FAMILIES = {"sd15": "a Stable Diffusion 1.x / 2.x", "sdxl": "an SDXL", "flux": "a FLUX.1"}  # the presets' prefixes


def model_family(components: dict[str, Any]) -> str | None:
    """The preset family of the denoiser among ``components`` (``sd15`` for SD 1.x and 2.x); None without one."""
    if type(components.get("transformer")).__name__ == "FluxTransformer2DModel":
        return "flux"
    unet = components.get("unet")
    if unet is None or not hasattr(unet, "config"):
        return None
    return "sdxl" if getattr(unet.config, "addition_embed_type", None) == "text_time" else "sd15"


def from_json(param, value: Any) -> Any:
    """A JSON array as the tuple a param's type hint asks for (JSON has no tuples)."""
    if isinstance(value, list) and any(m is tuple or get_origin(m) is tuple for m in members(param.type_hint)):
        return tuple(value)
    return value


def _description(block) -> str:
    text = block.description() if callable(block.description) else block.description
    return (text or "").strip()


def _create_missing(block, components: dict[str, Any]) -> None:
    """Components made in code (guider, image processors) that neither a wire nor the bundle gave."""
    for spec in block.expected_components:
        if components.get(spec.name) is None and spec.default_creation_method == "from_config":
            try:
                components[spec.name] = spec.create()
            except DiffblocksError:
                continue
