"""diffblocks.presets"""
