"""diffblocks.components"""
