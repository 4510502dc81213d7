"""ComponentsManager: one registry of loaded components, shared by pipelines, with automatic CPU offload.

Notices the caller should act on (the same object or the same checkpoint registered twice) are
``warnings.warn`` (``UserWarning``); routine events (a component replaced in its collection, models moved
by the offloader) are logged on ``diffblocks.components.manager`` / ``.offload``.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch

from .errors import AmbiguousComponentError, ComponentNotFoundError, ConfigError
from .offload import AutoOffloader, MemoryProbe, device_free_memory, module_size_bytes, parse_size
from .spec import load_id_of

logger = logging.getLogger(__name__)

_REMOVE_HINT = "To remove a duplicate, call `components_manager.remove('<component_id>')`."


def matches_pattern(pattern: str, name: str) -> bool:
    """Whether component ``name`` matches ``pattern``.

    ``unet`` matches exactly, ``unet*`` by prefix (``*`` is a wildcard anywhere), ``unet|vae`` either
    term, and a leading ``!`` negates the whole pattern (``!unet|vae``: neither).
    """
    negate = pattern.startswith("!")
    terms = (pattern[1:] if negate else pattern).split("|")
    hit = any(re.fullmatch(".*".join(map(re.escape, term.split("*"))), name) for term in terms)
    return hit != negate


@dataclass
class _Entry:
    name: str
    component: Any


class ComponentsManager:
    """A registry of components shared across pipelines, with duplicate detection and auto offload.

    Each component gets the id ``f"{name}_{id(component)}"``. A collection (a tag, e.g. one node of a
    node-based UI) holds at most one component per name. Every public method is thread-safe.
    """

    def __init__(self):
        self._lock = threading.RLock()
        self._entries: dict[str, _Entry] = {}
        self._collections: dict[str, set[str]] = {}
        self._offloader: AutoOffloader | None = None

    # --- registry --------------------------------------------------------------------------------

    @property
    def components(self) -> dict[str, Any]:
        """A snapshot: component id -> component, in the order they were added."""
        with self._lock:
            return {cid: e.component for cid, e in self._entries.items()}

    @property
    def collections(self) -> dict[str, set[str]]:
        """A snapshot: collection name -> ids of its components."""
        with self._lock:
            return {name: set(ids) for name, ids in self._collections.items()}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, component_id: object) -> bool:
        return component_id in self._entries

    def add(self, name: str, component: Any, collection: str | None = None) -> str:
        """Register ``component`` under ``name``, optionally in ``collection``.

        Adding the same object under the same name again returns its existing id. Adding another component
        with the same name to the same collection removes the one there before (from the manager too, if
        it is in no other collection). Warns when the object is already registered under another name, or
        when another object was loaded from the same ``load_id``.

        Args:
            name: The component name pipelines ask for ("unet", "vae", ...).
            component: The object.
            collection: Optional tag grouping components.

        Returns:
            The component id.
        """
        with self._lock:
            component_id = f"{name}_{id(component)}"
            if component_id not in self._entries:
                self._warn_duplicates(component_id, component)
                self._entries[component_id] = _Entry(name, component)
                if self._offloader is not None and isinstance(component, torch.nn.Module):
                    self._offloader.attach(component_id, component)
                logger.info("ComponentsManager: added '%s' as '%s'", name, component_id)
            if collection is not None:
                self._add_to_collection(component_id, name, collection)
            return component_id

    def _warn_duplicates(self, component_id: str, component: Any) -> None:
        for cid, entry in self._entries.items():
            if entry.component is component:
                warnings.warn(
                    f"ComponentsManager: adding component '{component_id}', but it is the same object as the "
                    f"existing component '{cid}'. {_REMOVE_HINT}",
                    stacklevel=3,
                )
        load_id = load_id_of(component)
        if load_id is None or load_id.split("|")[0] in ("", "null"):
            return
        same = [cid for cid in self._select(None, None, load_id) if self._entries[cid].component is not component]
        if same:
            warnings.warn(
                f"ComponentsManager: adding component '{component_id}', but it has duplicate load_id '{load_id}' "
                f"with existing components: {', '.join(same)}. {_REMOVE_HINT}",
                stacklevel=3,
            )

    def _add_to_collection(self, component_id: str, name: str, collection: str) -> None:
        members = self._collections.setdefault(collection, set())
        if component_id in members:
            return
        for old_id in [cid for cid in self._entries if cid in members and self._entries[cid].name == name]:
            logger.info(  # routine: a pipeline swapped its scheduler or guider, or shares another's
                "ComponentsManager: replacing '%s' in collection '%s' with '%s'", old_id, collection, component_id
            )
            self.remove_from_collection(old_id, collection)
        self._collections.setdefault(collection, set()).add(component_id)

    def remove(self, component_id: str) -> None:
        """Unregister a component, take its offload hook off, and drop every reference the manager holds.

        Raises:
            ComponentNotFoundError: No component has this id.
        """
        with self._lock:
            if component_id not in self._entries:
                raise ComponentNotFoundError.no_match(component_id, self._entries)
            del self._entries[component_id]
            for name in [c for c, ids in self._collections.items() if component_id in ids]:
                self._collections[name].discard(component_id)
                if not self._collections[name]:
                    del self._collections[name]
            if self._offloader is not None:
                self._offloader.detach(component_id)
            logger.info("ComponentsManager: removed '%s'", component_id)

    def remove_from_collection(self, component_id: str, collection: str) -> None:
        """Take a component out of ``collection``; one left in no collection is removed from the manager.

        Raises:
            ComponentNotFoundError: The component is not in that collection.
        """
        with self._lock:
            members = self._collections.get(collection, set())
            if component_id not in members:
                raise ComponentNotFoundError.no_match(component_id, members, where=f" in collection '{collection}'")
            members.discard(component_id)
            if not members:
                del self._collections[collection]
            if not any(component_id in ids for ids in self._collections.values()):
                self.remove(component_id)

    def remove_collection(self, collection: str) -> list[str]:
        """Take every component out of ``collection`` (a node was deleted); returns the ids now removed."""
        with self._lock:
            ids = sorted(self._collections.get(collection, ()))
            removed = [cid for cid in ids if not any(cid in m for c, m in self._collections.items() if c != collection)]
            for cid in ids:
                self.remove_from_collection(cid, collection)
            return removed

    # --- look-ups --------------------------------------------------------------------------------

    def _select(self, pattern: str | None, collection: str | None, load_id: str | None) -> list[str]:
        scope = self._collections.get(collection, set()) if collection is not None else None
        return [
            cid
            for cid, e in self._entries.items()
            if (scope is None or cid in scope)
            and (load_id is None or load_id_of(e.component) == load_id)
            and (pattern is None or matches_pattern(pattern, e.name))
        ]

    def get_one(self, name: str | None = None, collection: str | None = None, load_id: str | None = None) -> Any:
        """The one component matching ``name`` (a pattern, see :func:`matches_pattern`), collection and load_id.

        Raises:
            ComponentNotFoundError: Nothing matches; the message lists what is registered.
            AmbiguousComponentError: More than one component matches; the message lists them.
        """
        with self._lock:
            ids = self._select(name, collection, load_id)
            shown = name if name is not None else "*"
            if not ids:
                where = "".join(
                    f" {label} '{value}'"
                    for label, value in (("in collection", collection), ("with load_id", load_id))
                    if value is not None
                )
                raise ComponentNotFoundError.no_match(shown, self._entries, where=where)
            if len(ids) > 1:
                raise AmbiguousComponentError.many(shown, ids)
            return self._entries[ids[0]].component

    def find_by_load_id(self, load_id: str) -> Any | None:
        """The earliest added component loaded from ``load_id``, or None: lets a pipeline reuse a loaded model."""
        with self._lock:
            ids = self._select(None, None, load_id)
            return self._entries[ids[0]].component if ids else None

    def get_ids(self, names: str | Sequence[str] | None = None, collection: str | None = None) -> list[str]:
        """Ids of the components matching any of ``names`` (patterns; None: all), in the order added."""
        with self._lock:
            if names is None:
                return self._select(None, collection, None)
            patterns = [names] if isinstance(names, str) else list(names)
            found = {cid for p in patterns for cid in self._select(p, collection, None)}
            return [cid for cid in self._entries if cid in found]

    def get_components_by_ids(self, ids: Iterable[str], return_dict_with_names: bool = True) -> dict[str, Any]:
        """The components with these ids, keyed by name (or by id with ``return_dict_with_names=False``).

        Raises:
            ComponentNotFoundError: An id is not registered.
            AmbiguousComponentError: Two ids share a name and ``return_dict_with_names`` is true.
        """
        with self._lock:
            result: dict[str, Any] = {}
            owners: dict[str, str] = {}
            for cid in ids:
                if cid not in self._entries:
                    raise ComponentNotFoundError.no_match(cid, self._entries)
                entry = self._entries[cid]
                if not return_dict_with_names:
                    result[cid] = entry.component
                    continue
                if entry.name in owners and owners[entry.name] != cid:
                    raise AmbiguousComponentError.many(entry.name, [owners[entry.name], cid])
                owners[entry.name] = cid
                result[entry.name] = entry.component
            return result

    def get_components_by_names(self, names: str | Iterable[str], collection: str | None = None) -> dict[str, Any]:
        """Name -> component for each of ``names`` that is registered, ready for ``pipe.update_components(**d)``.

        Names match exactly; names with no component are left out (a pipeline asks for all of its null
        components, some of which nobody loaded).

        Raises:
            AmbiguousComponentError: A name has more than one component (narrow it with ``collection``).
        """
        with self._lock:
            result: dict[str, Any] = {}
            for name in [names] if isinstance(names, str) else names:
                ids = [cid for cid in self._select(None, collection, None) if self._entries[cid].name == name]
                if len(ids) > 1:
                    raise AmbiguousComponentError.many(name, ids)
                if ids:
                    result[name] = self._entries[ids[0]].component
            return result

    # --- offload ---------------------------------------------------------------------------------

    @property
    def offloader(self) -> AutoOffloader | None:
        """The active :class:`AutoOffloader`, or None when auto offload is off."""
        return self._offloader

    def enable_auto_cpu_offload(
        self,
        device: str | int | torch.device = "cuda",
        memory_reserve_margin: str | int = "3GB",
        memory_probe: MemoryProbe | None = None,
    ) -> None:
        """Keep every model on CPU and move it to ``device`` right before its forward runs.

        Other models are moved back to CPU only when the incoming one would not fit in the free device
        memory minus ``memory_reserve_margin`` (see :func:`~diffblocks.components.offload.choose_offload`).
        A model whose forward (or ``apply_forward_hook`` entry point, such as ``decode``) runs in any thread is
        never moved; a model that needs its room waits for that forward to end. Components added later are
        hooked too; removed ones are unhooked (one running goes back to CPU when its forward ends).

        Args:
            device: The execution device.
            memory_reserve_margin: Memory to keep free for activations, e.g. ``"3GB"`` or bytes.
            memory_probe: Returns the free bytes of a device; defaults to querying torch.

        Raises:
            ConfigError: The device cannot be queried, or the margin is not a size.
        """
        device = torch.device(device)
        reserve = parse_size(memory_reserve_margin, "memory_reserve_margin")
        probe = memory_probe or device_free_memory
        try:
            probe(device)
        except Exception as err:  # torch raises RuntimeError or AssertionError for a missing device
            raise ConfigError.bad_value(
                "ComponentsManager.enable_auto_cpu_offload", "device", "an available device", str(device)
            ) from err
        with self._lock:
            self.disable_auto_cpu_offload()
            self._offloader = AutoOffloader(device, reserve, probe, self._lock)
            for cid, entry in self._entries.items():
                if isinstance(entry.component, torch.nn.Module):
                    self._offloader.attach(cid, entry.component)

    def disable_auto_cpu_offload(self) -> None:
        """Take the offload hooks off; every model is left on CPU."""
        with self._lock:
            if self._offloader is not None:
                self._offloader.detach_all()
                self._offloader = None

    # --- display ---------------------------------------------------------------------------------

    def __repr__(self) -> str:
        with self._lock:
            rows = [_summary_row(cid, e.component, self._collections) for cid, e in self._entries.items()]
            hooked = f", auto offload to {self._offloader.device}" if self._offloader else ""
        head = f"ComponentsManager ({len(rows)} components{hooked})"
        if not rows:
            return head
        return head + "\n" + _table(("id", "class", "collection", "device", "dtype", "size", "load_id"), rows)


def _summary_row(cid: str, obj: Any, collections: dict[str, set[str]]) -> tuple[str, ...]:
    colls = ", ".join(sorted(c for c, ids in collections.items() if cid in ids)) or "-"
    device = dtype = size = "-"
    if isinstance(obj, torch.nn.Module):
        tensor = next(obj.parameters(), None)
        if tensor is None:
            tensor = next(obj.buffers(), None)
        if tensor is not None:
            device, dtype = str(tensor.device), str(tensor.dtype).replace("torch.", "")
        hook = getattr(obj, "_hf_hook", None)
        if hook is not None:
            device += f" (exec {getattr(hook, 'execution_device', '?')})"
        size = _format_bytes(module_size_bytes(obj))
    return cid, type(obj).__name__, colls, device, dtype, size, load_id_of(obj) or "-"


def _format_bytes(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.2f} MB"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(r[i])) for r in (headers, *rows)) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        return " | ".join(str(c).ljust(w) for c, w in zip(cells, widths)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *map(line, rows)])
