"""How latents are enlarged, by name: A1111's Latent hires upscalers and ComfyUI's LatentUpscaleBy methods (but
bislerp) -> (torch's interpolation mode, antialiased). Apart from ``image_processor`` (which does the enlarging) so
that the node catalog reads the names without importing torch."""

LATENT_SCALING = {"bilinear": ("bilinear", False), "bilinear-antialiased": ("bilinear", True),
                  "bicubic": ("bicubic", False), "bicubic-antialiased": ("bicubic", True),
                  "nearest": ("nearest", False), "nearest-exact": ("nearest-exact", False), "area": ("area", False)}
