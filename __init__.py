"""diffblocks: build diffusion pipelines out of declarative blocks."""

__version__ = "0.1.0"
