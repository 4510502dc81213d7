"""``LoadTextualInversion``: a components bundle whose tokenizers and text encoders know one more word, a
textual-inversion embedding (A1111's and ComfyUI's ``embeddings/``, or diffusers' ``learned_embeds``).

The tokenizer and text encoder in the ComponentsManager are shared by every workflow, so the word goes into a copy
of the tokenizer and a weight-sharing copy of the encoder's module tree (as ``LoadLoRA`` does) with its own,
longer, embedding table: the shared ones, and every workflow reading them, stay as they were. Chained nodes add
a word each.
"""

from __future__ import annotations

import copy
from pathlib import PurePath
from typing import Any

from .adapter_nodes import STRING, weight_sharing_copy
from .bundle import ComponentsBundle
from .model_files import model_input
from .node_type import NodeInput, NodeOutput, NodeType, RunContext

PAIRS = (("tokenizer", "text_encoder"), ("tokenizer_2", "text_encoder_2"))  # SDXL's second for clip_g


class LoadTextualInversion(NodeType):
    name = "LoadTextualInversion"
    category = "loaders"
    description = ("A textual-inversion embedding (A1111 / ComfyUI .pt or .safetensors, or diffusers' learned_embeds) "
                   "for the bundle's tokenizers and text encoders: its token then stands for the learned vectors in "
                   "prompts; outputs the bundle with them.")

    def __init__(self):
        self.inputs = {
            "components": NodeInput({"description": "the bundle whose text encoders learn the word"}, required=True,
                                    socket="components"),
            "file": NodeInput(model_input({**STRING, "minLength": 1, "description": "the embedding file"},
                                          "embeddings"), required=True),
            "token": NodeInput({**STRING, "default": "", "description": (
                "the word prompts use for it (default: the file's name without its extension, as A1111's)")}),
        }
        self.outputs = {"components": NodeOutput("components"), "text_encoder": NodeOutput("CLIPTextModel")}

    def check_value(self, name: str, value: Any) -> str | None:
        if name in ("file", "token") and not isinstance(value, str):
            return f"must be a string, got {value!r}"
        return None

    def run(self, ctx: RunContext, values: dict[str, Any]) -> dict[str, Any]:
        from ..components.spec import LOAD_ID_ATTR, load_id_of
        from ..components.textual_inversion import load_textual_inversion

        bundle: ComponentsBundle = values["components"]
        file = values["file"]
        token = values.get("token") or PurePath(file).stem
        copies: dict[str, Any] = {}
        for tokenizer_name, encoder_name in PAIRS:
            tokenizer, encoder = bundle.components.get(tokenizer_name), bundle.components.get(encoder_name)
            if tokenizer is None or encoder is None:
                continue
            copies[tokenizer_name], copies[encoder_name] = copy.deepcopy(tokenizer), weight_sharing_copy(encoder)
            object.__setattr__(copies[encoder_name], LOAD_ID_ATTR, f"{load_id_of(encoder) or 'memory'}+ti:{file}#{token}")
        if not copies:
            raise ValueError(f"the bundle from {bundle.source} has no tokenizer and text encoder to add '{token}' to")
        pairs = [(copies[t], copies[e]) if t in copies else (None, None) for t, e in PAIRS]
        load_textual_inversion(pairs, file, token=token)
        return {"components": ComponentsBundle({**bundle.components, **copies}, bundle.config, bundle.source),
                "text_encoder": copies.get("text_encoder")}
