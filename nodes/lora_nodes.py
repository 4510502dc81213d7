"""``LoadLoRA``: a components bundle whose UNet (or FLUX.1's transformer) and text encoders carry a LoRA.

The models in the ComponentsManager are shared by every workflow, so the LoRA goes into weight-sharing copies
of their module trees (as ``LoadIPAdapter`` does): no memory for the weights, and the shared models, and every
workflow reading them, stay as they were. Chained ``LoadLoRA`` nodes stack: each keeps the adapters before it
active at their scales.
"""

from __future__ import annotations

from typing import Any

from .adapter_nodes import STRING, weight_sharing_copy
from .bundle import ComponentsBundle
from .model_files import model_input
from .node_type import NodeInput, NodeOutput, NodeType, RunContext

LORA_MODELS = ("unet", "transformer", "text_encoder", "text_encoder_2")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
_SCALES = "_diffblocks_lora_node_scales"  # adapter -> scale, set by the LoadLoRA nodes before this copy


class LoadLoRA(NodeType):
    name = "LoadLoRA"
    category = "loaders"
    description = ("A LoRA (diffusers/PEFT or kohya/A1111 file, .safetensors or .bin) for the bundle's UNet (or FLUX.1 "
                   "transformer) and text encoders; outputs the bundle with the adapted models.")

    def __init__(self):
        self.inputs = {
            "components": NodeInput({"description": "the bundle whose models get the LoRA"}, required=True,
                                    socket="components"),
            "repo": NodeInput(model_input({**STRING, "minLength": 1, "description": "LoRA file, folder or Hub repo id"},
                                          "loras"), required=True),
            "weight_name": NodeInput({**STRING, "default": "", "description": "file in the folder or repo"}),
            "adapter_name": NodeInput({**STRING, "default": "", "description": "adapter name (default: default_<n>)"}),
            "scale": NodeInput({"type": "number", "default": 1.0, "description": "LoRA strength"}),
            "text_encoder_scale": NodeInput({"anyOf": [{"type": "number"}, {"type": "null"}], "default": None,
                                             "description": "LoRA strength in the text encoders (empty: scale), as "
                                                            "ComfyUI's strength_clip; 0 leaves them as they were"}),
        }
        self.outputs = {"components": NodeOutput("components"), "unet": NodeOutput("UNet2DConditionModel"),
                        "text_encoder": NodeOutput("CLIPTextModel")}

    def check_value(self, name: str, value: Any) -> str | None:
        is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if name == "scale" and not is_number:
            return f"must be a number, got {value!r}"
        if name == "text_encoder_scale" and not (value is None or is_number):
            return f"must be a number or null, got {value!r}"
        if name in ("repo", "weight_name", "adapter_name") and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        from ..components.lora import load_lora, set_weights

        bundle: ComponentsBundle = values["components"]
        scale = float(values.get("scale", 1.0))
        clip = values.get("text_encoder_scale")
        strength = {n: float(clip) if clip is not None and n in TEXT_ENCODERS else scale for n in LORA_MODELS}
        models = {n: self._copy(bundle.components[n], values, strength[n]) for n in LORA_MODELS
                  if bundle.components.get(n) is not None}
        skip = tuple(n for n in TEXT_ENCODERS if n not in models)
        adapter = load_lora(models, values["repo"], values.get("weight_name") or None,
                            values.get("adapter_name") or None, skip=skip)
        for model_name, model in models.items():
            scales = {**getattr(model, _SCALES, {}), adapter: strength[model_name]}
            object.__setattr__(model, _SCALES, scales)
            set_weights(model, {name: s for name, s in scales.items() if name in _loaded(model)})
        return {"components": ComponentsBundle({**bundle.components, **models}, bundle.config, bundle.source),
                "unet": models.get("unet"), "text_encoder": models.get("text_encoder")}

    @staticmethod
    def _copy(model, values: dict[str, Any], scale: float):
        from ..components.spec import LOAD_ID_ATTR, load_id_of

        twin = weight_sharing_copy(model)
        where = f"{values['repo']}/{values.get('weight_name') or ''}#{values.get('adapter_name') or ''}@{scale}"
        object.__setattr__(twin, LOAD_ID_ATTR, f"{load_id_of(model) or 'memory'}+lora:{where}")
        return twin


def _loaded(model) -> list[str]:
    from ..components.lora import loaded_adapters

    return loaded_adapters(model)
