"""Arguments a pipeline or block hands on: the block's class name in declaration errors, the memory probe
to the offloader."""

import pytest
from toy_components import UsesScale

from diffblocks import InputParam, ModularPipelineBlocks
from diffblocks.modular_pipelines.errors import BlockDeclarationError


def test_declaration_errors_name_the_block_class():
    class TwiceX(ModularPipelineBlocks):
        inputs = [InputParam("x"), InputParam("x")]

    with pytest.raises(BlockDeclarationError, match="^TwiceX declares inputs more than once: x$"):
        TwiceX()


def test_cpu_offload_uses_the_memory_probe_given(monkeypatch):
    import diffblocks.components.manager as manager

    monkeypatch.setattr(manager, "device_free_memory", lambda device: pytest.fail("queried torch, not the probe"))
    asked = []
    pipe = UsesScale().init_pipeline()
    pipe.enable_model_cpu_offload("cpu", 0, memory_probe=lambda device: asked.append(device) or 10**9)
    assert asked and {str(d) for d in asked} == {"cpu"}
