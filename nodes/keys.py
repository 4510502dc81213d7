"""Cache keys, computed (never remembered): a node's key is a hash of its type and that type's source version,
its constant inputs, the keys of the outputs wired into it, and the identity of every component it receives.

So a new seed changes the key of the node taking it and, through their inputs, of every node after it, and
nothing before; a component changed in place (an adapter loaded into the UNet) changes the key of every node
that receives it. A model file a loader names counts by its size, modification time and inode too: a LoRA saved
again under the same name (a training run's next epoch) is read again, and what it feeds recomputed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import weakref
from typing import Any

_tokens = itertools.count()
_token_of: "weakref.WeakKeyDictionary[Any, str]" = weakref.WeakKeyDictionary()


def node_key(type_name: str, version: str, constants: dict[str, Any], links: dict[str, str],
             identities: dict[str, str], files: dict[str, str] | None = None) -> str:
    """The key of one node run. ``links`` maps each wired input to ``"<upstream key>:<output>"``; ``files`` each
    input naming a model file to its :func:`file_stamp`."""
    payload = json.dumps([type_name, version, constants, links, identities, files or {}], sort_keys=True, default=repr)
    return hashlib.sha256(payload.encode()).hexdigest()


def file_stamp(path: Any) -> str | None:
    """``"<size>:<mtime ns>:<inode>"`` of the file at ``path`` (a file saved again, in place or by a rename, gets
    another); None for anything else (a folder, a Hub id, a name that is no file here)."""
    if not isinstance(path, str) or not path:
        return None
    try:
        found = os.stat(os.path.expanduser(path))
    except (OSError, ValueError):
        return None
    return f"{found.st_size}:{found.st_mtime_ns}:{found.st_ino}" if stat.S_ISREG(found.st_mode) else None


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
