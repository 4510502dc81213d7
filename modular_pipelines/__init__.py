"""diffblocks.modular_pipelines"""
