"""The ``diffblocks`` command: render prompts with a preset, or inspect a preset's blocks.

    diffblocks run --prompt "a handwritten digit seven" --out seven.png     # the embedded model, offline
    diffblocks run --prompt "a seven" --image three.png --strength 0.6       # image-to-image, picked from --image
    diffblocks run --prompt "a cat" --preset sdxl --model stabilityai/stable-diffusion-xl-base-1.0
    diffblocks inspect sd15-text2image

Without ``--preset`` (or with only a family, ``sd15`` / ``sdxl``) the workflow follows the flags: inpaint with
``--mask-image``, image-to-image with ``--image``, text-to-image otherwise; ``--controlnet`` and
``--ip-adapter`` add their blocks to it. Every flag is checked before a model loads; mistakes, and the
pipeline's own complaints about an input (reworded to name the flag), end with one line on stderr and exit
code 2.

Each subcommand is one module with an ``add_parser(commands)`` (``run``, ``inspect``); what they share lives in
``flags`` (flag tables and value checks), ``files`` (images, ``--out``, model folders and repos), ``choices``
(scheduler, guider, device), ``presets`` (preset names and the blocks they compose) and ``messages`` (errors
reworded to name flags).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from importlib import metadata
from typing import Sequence

from ..components.errors import DiffblocksError
from . import batch, inspect, run, serve, worker
from .messages import cli_message

COMMANDS = (run, batch, inspect, serve, worker)  # in the order --help lists them


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def version_line() -> str:
    """``diffblocks <version> (torch <version>, Python <version>)``, read without importing torch."""
    from .. import __version__

    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"diffblocks {__version__} (torch {torch_version}, Python {platform.python_version()})"


def build_parser() -> Parser:
    """The ``diffblocks`` parser, with one subcommand per module in ``COMMANDS``."""
    parser = Parser(prog="diffblocks", description="Build and run diffusion pipelines out of blocks.")
    parser.add_argument("--version", action="version", version=version_line())
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    # named in usage and in "the following arguments are required", where argparse would say "command"
    commands.metavar = "{" + ",".join(commands.choices) + "}"
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``diffblocks`` console script; returns the exit code (argparse exits by itself,
    with 2, on a malformed command line, and with 0 after ``--help`` / ``--version``)."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DiffblocksError as err:
        print(f"diffblocks: error: {cli_message(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`diffblocks inspect ... | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit stays quiet
        return 0
