"""One renderer for values, reprs and docs.

Block reprs and ``.doc`` come from here; values are shown with ``format_value``
(``components/formatting.py``, shared with error messages).
"""

from __future__ import annotations

from typing import Any

from ..components.formatting import format_value  # noqa: F401  (shared by reprs and messages)


def _text(value: Any) -> str:
    if callable(value):  # a description written as a plain method
        value = value()
    return (value or "").strip()


def _type_label(type_hint: Any) -> str:
    from .params import type_name

    return type_name(type_hint)


def _input_line(param, long: bool) -> tuple[str, str]:
    name = param.name if param.name is not None else f"**{param.kwargs_type}"
    shown = _workflow_outcomes(param)
    defaults = [outcome for outcome, _ in shown if outcome != "required"]
    if param.required:
        flag = "required"
    elif param.has_default:
        flag = f"default={format_value(param.default, max_len=30)}"
    elif len(set(defaults)) > 1:
        flag = "default " + " or ".join(dict.fromkeys(d.removeprefix("default ") for d in defaults))
    else:
        flag = "optional"
    description = param.description
    if shown:
        note = _workflow_note(shown)
        description = f"{description}; {note}" if description else note
    return f"{name} ({_type_label(param.type_hint)}, {flag})", description


def _workflow_outcomes(param) -> list[tuple[str, tuple]]:
    """``(outcome, condition)`` per workflow where an aggregated input is demanded or defaulted differently
    (see :mod:`.composite`), in the order they apply; empty when one flag says it all."""
    from .composite import VARIANTS
    from .params import NO_DEFAULT

    shown = []
    for when, required, default in (param.metadata or {}).get(VARIANTS, ()):
        if (param.name, True) in when:
            continue  # the input is given there: how it would be defaulted or demanded does not matter
        if required:
            shown.append(("required", when))
        elif default is not NO_DEFAULT:
            shown.append((f"default {format_value(default, max_len=30)}", when))
    simple = "required" if param.required else f"default {format_value(param.default, max_len=30)}"
    return [] if {outcome for outcome, _ in shown} <= {simple} else shown


def _workflow_note(shown: list[tuple[str, tuple]]) -> str:
    """``default 1.0 when 'mask_image' is given, else 0.8 when 'image' is given``."""
    groups: list[tuple[str, list[tuple]]] = []
    for outcome, when in shown:
        if groups and groups[-1][0] == outcome:
            groups[-1][1].append(when)
        else:
            groups.append((outcome, [when]))
    parts = []
    for i, (outcome, conditions) in enumerate(groups):
        if i and outcome.startswith("default ") and groups[i - 1][0].startswith("default "):
            outcome = outcome.removeprefix("default ")
        parts.append(f"{outcome} {_when_text(conditions)}")
    return ", else ".join(parts)


def _when_text(conditions: list[tuple]) -> str:
    phrases = []
    for when in conditions:
        given = [f"'{name}'" for name, is_given in when if is_given]
        if not given:
            return "otherwise"
        phrases.append(" and ".join(given))
    verb = "are" if len(phrases) == 1 and len(phrases[0].split(" and ")) > 1 else "is"
    return f"when {' or '.join(phrases)} {verb} given"


def _output_line(param, long: bool) -> tuple[str, str]:
    return f"{param.name} ({_type_label(param.type_hint)})", param.description


def _component_line(spec, long: bool) -> tuple[str, str]:
    hint = spec.type_label
    how = "" if spec.default_creation_method == "from_pretrained" else ", from_config"
    return f"{spec.name} ({hint}{how})", spec.description or ""


def _config_line(spec, long: bool) -> tuple[str, str]:
    return f"{spec.name} = {format_value(spec.default, max_len=30)}", spec.description or ""


def _section(title: str, rows: list[tuple[str, str]], indent: str, long: bool) -> list[str]:
    if not rows:
        return []
    lines = [f"{indent}{title}:"]
    width = max(len(head) for head, _ in rows)
    for head, desc in rows:
        if long and desc:
            lines += [f"{indent}    {head}", f"{indent}        {desc}"]
        elif desc:
            lines.append(f"{indent}    {head.ljust(width)}  {desc}")
        else:
            lines.append(f"{indent}    {head}")
    return lines


def _tree(block, indent: str) -> list[str]:
    lines = []
    triggers = getattr(block, "trigger_map", None)
    for i, (name, sub) in enumerate(block.sub_blocks.items()):
        label = f"{indent}[{i}] {name} ({type(sub).__name__})"
        if triggers is not None:
            trigger = triggers.get(name)
            label += "  [default]" if trigger is None else f"  [when '{trigger}' is given]"
        lines.append(label)
        lines += _tree(sub, indent + "    ")
    return lines


def _block_lines(block, long: bool, indent: str = "  ") -> list[str]:
    lines = []
    desc = _text(block.description)
    if desc:
        lines += [f"{indent}Description:"] + [f"{indent}    {line}" for line in desc.splitlines()]
    lines += _section("Components", [_component_line(s, long) for s in block.expected_components], indent, long)
    lines += _section("Configs", [_config_line(s, long) for s in block.expected_configs], indent, long)
    if len(block.sub_blocks):
        lines += [f"{indent}Sub-Blocks:"] + _tree(block, indent + "    ")
    lines += _section("Inputs", [_input_line(p, long) for p in block.inputs], indent, long)
    lines += _section("Outputs", [_output_line(p, long) for p in block.intermediate_outputs], indent, long)
    return lines


def render_block(block) -> str:
    """``repr`` of any block: description, components, configs, sub-block tree, inputs, outputs."""
    return "\n".join([f"{type(block).__name__}("] + _block_lines(block, long=False) + [")"])


def render_doc(block) -> str:
    """``block.doc``: the same sections, one param per entry with its description below it."""
    return "\n".join([f"class {type(block).__name__}", ""] + _block_lines(block, long=True, indent=""))


def render_pipeline(pipe) -> str:
    """``repr`` of a ModularPipeline: its blocks' class, each component with how it is made, configs."""
    lines = [f"ModularPipeline(blocks={type(pipe.blocks).__name__})", "  Components:"]
    for name, spec in pipe._specs.items():
        component = pipe._components.get(name)
        state = "not loaded" if component is None else type(component).__name__
        source = spec.load_id if spec.default_creation_method == "from_pretrained" else "from_config"
        lines.append(f"    {name}: {state}  [{source}]")
    if pipe._config_values:
        lines.append("  Configs:")
        lines += [f"    {k} = {format_value(v, max_len=30)}" for k, v in pipe._config_values.items()]
    return "\n".join(lines)
