"""diffblocks.presets"""

from .embedded import embedded_model_path

__all__ = ["embedded_model_path"]
