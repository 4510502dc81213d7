"""diffblocks.components.models"""
