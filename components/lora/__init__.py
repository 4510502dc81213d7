"""LoRA adapters for the UNet (or FLUX.1's transformer) and the text encoders: reading the usual file layouts
(:mod:`.formats`), finding their layers in our models (:mod:`.mapping`) and applying them with PEFT's layers
(:mod:`.inject`)."""

from .inject import active_adapters, delete_adapters, enable, fuse, is_fused, loaded_adapters, set_weights, unfuse, unload
from .load import load_lora

__all__ = ["active_adapters", "delete_adapters", "enable", "fuse", "is_fused", "load_lora", "loaded_adapters",
           "set_weights", "unfuse", "unload"]
