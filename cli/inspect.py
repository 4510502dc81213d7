"""``diffblocks inspect PRESET``: print a preset's blocks, inputs, outputs and data-flow graph."""

from __future__ import annotations

from .presets import PRESETS, load_preset


def inspect_preset(args) -> int:
    """``diffblocks inspect``: the block tree, inputs and outputs, then the data-flow graph as mermaid."""
    from .. import SequentialPipelineBlocks

    blocks = SequentialPipelineBlocks.from_blocks_dict(load_preset(args.preset))
    print(blocks.doc if args.doc else repr(blocks))
    print("\nData flow (mermaid):\n")
    print(blocks.to_mermaid())
    return 0


def add_parser(commands) -> None:
    """Add the ``inspect`` subcommand to ``commands`` (an argparse subparsers action)."""
    i = commands.add_parser("inspect", help="print a preset's blocks, inputs, outputs and data-flow graph")
    i.add_argument("preset", help=f"one of: {', '.join(PRESETS)}")
    i.add_argument("--doc", action="store_true", help="one entry per param, with descriptions")
    i.set_defaults(func=inspect_preset)
