"""diffblocks.blocks.stable_diffusion_xl"""
