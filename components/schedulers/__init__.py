"""diffblocks.components.schedulers"""
