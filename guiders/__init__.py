"""diffblocks.guiders"""
