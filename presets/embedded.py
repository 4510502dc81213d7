"""The tiny text-to-image model shipped inside the package (``presets/tiny_digits``).

It is a standard Stable Diffusion 1.5 format folder trained on scikit-learn's handwritten digits by
``examples/train_tiny_digits.py``, so the SD 1.5 presets run end to end offline::

    pipe = SequentialPipelineBlocks.from_blocks_dict(TEXT2IMAGE_BLOCKS).init_pipeline(embedded_model_path())
"""

from __future__ import annotations

from pathlib import Path

from ..components.errors import MissingFileError

EMBEDDED_MODEL = "tiny_digits"


def embedded_model_path() -> Path:
    """The folder of the embedded model (``model_index.json`` and one subfolder per component).

    Raises:
        MissingFileError: the folder is not installed (a build that left out the package data).
    """
    path = Path(__file__).resolve().parent / EMBEDDED_MODEL
    if not (path / "model_index.json").is_file():
        raise MissingFileError.not_found([str(path / "model_index.json")], what="embedded model")
    return path
