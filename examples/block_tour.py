"""A block-only tour of the core: build, edit, inspect and run a pipeline (no models needed)."""

from diffblocks import (
    AutoPipelineBlocks,
    InputParam,
    InsertableDict,
    ModularPipelineBlocks,
    OutputParam,
    SequentialPipelineBlocks,
)


class Tokenize(ModularPipelineBlocks):
    description = "Split the prompt into words."
    inputs = [InputParam("prompt", type_hint=str, required=True, description="what to draw")]
    intermediate_outputs = [OutputParam("tokens", type_hint=list, description="the prompt's words")]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.tokens = block_state.prompt.split()
        self.set_block_state(state, block_state)
        return components, state


class Shout(ModularPipelineBlocks):
    description = "Upper-case every token."
    inputs = [InputParam("tokens", type_hint=list, required=True)]
    intermediate_outputs = [OutputParam("tokens", type_hint=list)]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.tokens = [t.upper() for t in block_state.tokens]
        self.set_block_state(state, block_state)
        return components, state


class Join(ModularPipelineBlocks):
    description = "Join tokens with a separator."
    inputs = [InputParam("tokens", type_hint=list, required=True), InputParam("sep", type_hint=str, default=" ")]
    intermediate_outputs = [OutputParam("text", type_hint=str)]

    def __call__(self, components, state):
        block_state = self.get_block_state(state)
        block_state.text = block_state.sep.join(block_state.tokens)
        self.set_block_state(state, block_state)
        return components, state


class MaybeShout(AutoPipelineBlocks):
    """Shout when `loud` is given."""

    block_classes = [Shout]
    block_names = ["shout"]
    block_trigger_inputs = ["loud"]


def main() -> None:
    preset = InsertableDict([("tokenize", Tokenize), ("join", Join)])
    preset.insert("shout", MaybeShout, 1)
    blocks = SequentialPipelineBlocks.from_blocks_dict(preset)
    print(blocks)
    print("\nData flow (mermaid):\n" + blocks.to_mermaid())
    pipe = blocks.init_pipeline()
    print("\nquiet:", pipe(prompt="a handwritten digit seven", output="text"))
    print("loud: ", pipe(prompt="a handwritten digit seven", loud=True, sep="-", output="text"))


if __name__ == "__main__":
    main()
