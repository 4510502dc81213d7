"""Cache keys, computed (never remembered): a node's key is a hash of its type and that type's source version,
its constant inputs, the keys of the outputs wired into it, and the identity of every component it receives.

So a new seed changes the key of the node taking it and, through their inputs, of every node after it, and
nothing before; a component changed in place (an adapter loaded into the UNet) changes the key of every node
that receives it.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import weakref
from typing import Any

_tokens = itertools.count()
_token_of: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def node_key(type_name: str, version: str, constants: dict[str, Any], links: dict[str, str],
             identities: dict[str, str]) -> str:
    """The key of one node run. ``links`` maps each wired input to ``"<upstream key>:<output>"``."""
    payload = json.dumps([type_name, version, constants, links, identities], sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()


def component_identity(component: Any) -> str | None:
    """What a model component is, for keys: its load id (or a token for objects made in memory) and the
    adapters active on it; None for values that are not components."""
    from ..components.spec import load_id_of, revision_of

    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    if not isinstance(component, torch.nn.Module):
        return None
    base = load_id_of(component) or _token(component)
    return f"{base}|{_adapters(component)}|{revision_of(component)}"


def identities(values: dict[str, Any]) -> dict[str, str]:
    """``{input: identity}`` for inputs that are components, or bundles of them (one entry per component)."""
    found = {}
    for name, value in values.items():
        members = getattr(value, "components", None) if type(value).__name__ == "ComponentsBundle" else None
        for member_name, member in (members or {name: value}).items():
            identity = component_identity(member)
            if identity is not None:
                found[f"{name}.{member_name}" if members is not None else name] = identity
    return found


def _token(obj: Any) -> str:
    try:
        token = _token_of.get(obj)
        if token is None:
            token = _token_of[obj] = f"memory:{next(_tokens)}"
        return token
    except TypeError:
        return f"memory:{id(obj)}"


def _adapters(module: Any) -> str:
    """Adapters injected with PEFT (names and the active set); other in-place changes (IP-Adapter processors and
    scales) count in the component's revision (``components.spec.mark_changed``)."""
    config = getattr(module, "peft_config", None)
    if not config:
        return ""
    active = getattr(module, "active_adapters", None)
    return "peft=" + ",".join(sorted(config)) + ";active=" + ",".join(active() if callable(active) else (active or []))
