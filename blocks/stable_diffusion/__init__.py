"""diffblocks.blocks.stable_diffusion"""
