"""A pipeline error as the CLI's one line: the pipeline's input names written as the flags that set them."""

from __future__ import annotations

import re

from .flags import FLAG_INPUTS

# the input names the pipeline's errors may use, with the flags to write instead (guidance_scale is the guider's)
FLAG_WORDS = {name: flag for flag, name in {**FLAG_INPUTS, "--guidance-scale": "guidance_scale"}.items()}
_NAMES = "|".join(sorted(FLAG_WORDS, key=len, reverse=True))
# quoted names and name=value always; bare names only where they cannot be ordinary words ("image", "width")
_BARE = "|".join(name for name in FLAG_WORDS if "_" in name or name == "strength")
# a name in double quotes is a prompts file's JSON key (diffblocks batch), and stays as it is
_INPUT_NAME = re.compile(rf"(?<![\w\"-])(?:(?:input )?'({_NAMES})'|({_NAMES})=|({_BARE})(?![\w\"-]))")
_LOCATED = re.compile(r"^(?:block '(?P<path>[^']+)'(?: \(\w+\))?|(?P<where>block \w+|pipeline))(?: failed)?: "
                      r"(?:\w+(?:Error|Exception): )?(?P<problem>.+)$")


def cli_message(err: BaseException) -> str:
    """The error's first line, with the pipeline's input names written as the flags that set them
    (``strength=1.5`` -> ``--strength 1.5``) and, when it is about a flag, the block it came from moved to
    the end."""
    text = str(err).strip()
    text = text.splitlines()[0] if text else type(err).__name__
    worded = _INPUT_NAME.sub(lambda m: FLAG_WORDS[m[1] or m[3]] if not m[2] else f"{FLAG_WORDS[m[2]]} ", text)
    located = _LOCATED.match(worded)
    if worded == text or located is None:
        return worded
    where = f"block '{located['path']}'" if located["path"] else located["where"]
    return f"{located['problem']} (in {where})"
