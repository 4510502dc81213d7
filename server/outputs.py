"""The engine's python values as JSON: images become artifacts, tensors a description, previews inline PNGs.

``GET /api/jobs/{id}`` shows outputs this way: JSON values as they are, a PIL image as ``{"artifact": sha}`` (a
list of images as a list of those), a tensor as ``{"socket": "tensor", "dtype", "shape"}``, a dtype as
``{"socket": "dtype", "value"}``, anything else (the components bundle, a model) as ``{"socket": "object", "type"}``."""

from __future__ import annotations

import base64
import json
import math
from typing import Any

from ..nodes.artifacts import ArtifactStore, ByIdentity, encode_png

_MAX_DEPTH = 4


def _is_image(value: Any) -> bool:
    return type(value).__module__.startswith("PIL") and hasattr(value, "getdata")


class OutputEncoder:
    """Turns output values into JSON, storing images in ``artifacts``.

    The same image object (a cached output returned again) is encoded once: its id is remembered for as long
    as the object lives."""

    def __init__(self, artifacts: ArtifactStore):
        self.artifacts = artifacts
        self._known = ByIdentity()

    def outputs(self, outputs: dict[str, dict[str, Any]], workflow: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
        """``{node: {output: value}}`` as JSON; images are stored with ``workflow`` in their PNG (a ``workflow`` tEXt
        chunk), so that an image dropped on an editor brings back what made it."""
        text = None if workflow is None else {"workflow": json.dumps(workflow, separators=(",", ":"), sort_keys=True)}
        return {node: {name: self.value(value, text=text) for name, value in values.items()}
                for node, values in outputs.items()}

    def value(self, value: Any, depth: int = 0, text: dict[str, str] | None = None) -> Any:
        """One output value as JSON (images stored with ``text`` chunks)."""
        if value is None or isinstance(value, (bool, int, str)):
            return value
        if isinstance(value, float):
            return value if math.isfinite(value) else str(value)
        if _is_image(value):
            return {"artifact": self.image(value, text)}
        if depth < _MAX_DEPTH and isinstance(value, (list, tuple)):
            return [self.value(item, depth + 1, text) for item in value]
        if depth < _MAX_DEPTH and isinstance(value, dict) and all(isinstance(key, str) for key in value):
            return {key: self.value(item, depth + 1, text) for key, item in value.items()}
        return describe(value)

    def image(self, image, text: dict[str, str] | None = None) -> str:
        """The artifact id of ``image``, storing it (once per object: a cached output keeps the PNG, and the
        workflow, of the job that made it) as PNG; an image opened from an artifact (``LoadImage``'s) is that one."""
        sha = self._known.get(image) or self.artifacts.source_of(image)
        if sha is None:
            sha = self.artifacts.put_image(image, text)
            self._known.put(image, sha)
        return sha


def describe(value: Any) -> dict[str, Any]:
    """A value JSON cannot carry: tensors and arrays by dtype and shape, a dtype by name, anything else (models,
    tokenizers, the components bundle) by its type only: their reprs are long and slow to build."""
    kind = type(value)
    module = kind.__module__
    if module.startswith("torch") and kind.__name__ in ("Tensor", "Parameter"):
        return {"socket": "tensor", "dtype": str(value.dtype).replace("torch.", ""), "shape": list(value.shape)}
    if module.startswith("numpy") and hasattr(value, "shape"):
        return {"socket": "array", "dtype": str(value.dtype), "shape": list(value.shape)}
    if module.startswith("torch") and kind.__name__ == "dtype":
        return {"socket": "dtype", "value": str(value).replace("torch.", "")}
    return {"socket": "object", "type": kind.__name__}


def preview_data_url(image) -> str:
    """A small preview image inline, as a ``data:image/png;base64,...`` URL.

    Previews are at most 128 pixels a side (a few kB as PNG), so they travel inside the event rather than as
    artifacts: no file per denoising step, nothing to clean up, and one message per preview."""
    return "data:image/png;base64," + base64.b64encode(encode_png(image)).decode("ascii")
