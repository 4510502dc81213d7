"""diffblocks.blocks"""
