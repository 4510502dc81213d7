"""The framework's own cost per block call, next to a plain Python function call measured in the same run.

Target (issue 2): at most 20 microseconds per block call.
- sequential: a SequentialPipelineBlocks of 50 trivial blocks, run through ModularPipeline.__call__
  (so pipeline entry, input checks, state handling and per-block get/set_block_state are all counted).
- loop: a loop wrapper with 3 trivial sub-blocks over 1,000 iterations (per sub-block call).
"""

from __future__ import annotations

import statistics
import time

from diffblocks.modular_pipelines import (
    InputParam,
    LoopSequentialPipelineBlocks,
    ModularPipelineBlocks,
    OutputParam,
    SequentialPipelineBlocks,
)


class Add(ModularPipelineBlocks):
    inputs = [InputParam("x", type_hint=int, default=0)]
    intermediate_outputs = [OutputParam("x")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.x += 1
        self.set_block_state(state, block_state)
        return components, state


class LoopAdd(ModularPipelineBlocks):
    inputs = [InputParam("x")]
    intermediate_outputs = [OutputParam("x")]

    def __call__(self, components, block_state, i):
        block_state.x += 1
        return components, block_state


class Loop(LoopSequentialPipelineBlocks):
    loop_inputs = [InputParam("num_steps", type_hint=int, required=True)]
    block_classes = [LoopAdd, LoopAdd, LoopAdd]
    block_names = ["a", "b", "c"]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        for i in range(block_state.num_steps):
            components, block_state = self.loop_step(components, block_state, i=i)
        self.set_block_state(state, block_state)
        return components, state


def plain(components, x):
    return components, x + 1


def per_call(fn, calls: int, repeats: int = 7) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) / calls * 1e6


def main() -> None:
    seq = SequentialPipelineBlocks.from_blocks_dict({f"b{i}": Add for i in range(50)}).init_pipeline()
    loop = Loop().init_pipeline()
    assert seq(x=0, output="x") == 50 and loop(num_steps=1000, x=0, output="x") == 3000

    def plain_calls():
        x = 0
        for _ in range(3000):
            _, x = plain(None, x)

    base = per_call(plain_calls, 3000)
    seq_us = per_call(lambda: seq(x=0), 50)
    loop_us = per_call(lambda: loop(num_steps=1000, x=0), 3000)
    print(f"plain python function call : {base:8.3f} us")
    print(f"sequential, 50 blocks       : {seq_us:8.3f} us per block call ({seq_us / base:6.1f}x a plain call)")
    print(f"loop, 3 blocks x 1000 steps : {loop_us:8.3f} us per block call ({loop_us / base:6.1f}x a plain call)")
    worst = max(seq_us, loop_us)
    print(f"target <= 20 us per block call: {'met' if worst <= 20 else 'NOT met'} (worst {worst:.2f} us)")


if __name__ == "__main__":
    main()
