import gc
import threading
import weakref

import pytest
import torch

from diffblocks.components.manager import ComponentsManager, matches_pattern
from diffblocks.modular_pipelines.errors import AmbiguousComponentError, ComponentNotFoundError

NAMES = ["text_encoder", "text_encoder_2", "unet", "vae", "scheduler"]


def with_load_id(obj, load_id):
    setattr(obj, "_diffblocks_load_id", load_id)
    return obj


class Scheduler:
    pass


@pytest.fixture
def cm():
    manager = ComponentsManager()
    for name in NAMES:
        obj = Scheduler() if name == "scheduler" else torch.nn.Linear(2, 2)
        manager.add(name, obj, collection="sdxl")
    return manager


def names_of(manager, ids):
    return sorted(i.rsplit("_", 1)[0] for i in ids)


# --- add / ids -------------------------------------------------------------------------------------


def test_add_returns_name_and_object_id():
    manager = ComponentsManager()
    unet = torch.nn.Linear(2, 2)
    assert manager.add("unet", unet) == f"unet_{id(unet)}"
    assert manager.components == {f"unet_{id(unet)}": unet}


def test_adding_same_object_under_same_name_returns_existing_id(recwarn):
    manager = ComponentsManager()
    unet = torch.nn.Linear(2, 2)
    first = manager.add("unet", unet)
    assert manager.add("unet", unet) == first
    assert len(manager) == 1
    assert not recwarn.list


def test_components_and_collections_are_snapshots(cm):
    cm.components.clear()
    cm.collections["sdxl"].clear()
    assert len(cm) == len(NAMES)
    assert len(cm.collections["sdxl"]) == len(NAMES)


# --- patterns --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern, expected",
    [
        ("unet", ["unet"]),
        ("text_encoder", ["text_encoder"]),
        ("text_encoder*", ["text_encoder", "text_encoder_2"]),
        ("*encoder*", ["text_encoder", "text_encoder_2"]),
        ("!unet", ["scheduler", "text_encoder", "text_encoder_2", "vae"]),
        ("unet|vae", ["unet", "vae"]),
        ("unet|text_encoder*", ["text_encoder", "text_encoder_2", "unet"]),
        ("!unet|vae|text_encoder*", ["scheduler"]),
        ("unetx", []),
    ],
)
def test_get_ids_pattern(cm, pattern, expected):
    assert names_of(cm, cm.get_ids(pattern)) == expected


@pytest.mark.parametrize("pattern, name", [("unet", "unet"), ("vae*", "vae"), ("sched*", "scheduler"), ("!*e*", None)])
def test_get_one_pattern(cm, pattern, name):
    if name is None:  # every name has an "e"
        with pytest.raises(ComponentNotFoundError):
            cm.get_one(pattern)
        return
    assert cm.get_one(name=pattern) is cm.components[cm.get_ids(name)[0]]


def test_matches_pattern_escapes_regex_characters():
    assert not matches_pattern("unet.", "unetx")
    assert matches_pattern("un+et*", "un+et_2")


def test_get_one_ambiguous_lists_the_matches(cm):
    with pytest.raises(AmbiguousComponentError) as info:
        cm.get_one(name="text_encoder*")
    message = str(info.value)
    assert "'text_encoder*' matches more than one component" in message
    for cid in cm.get_ids(["text_encoder", "text_encoder_2"]):
        assert cid in message
    assert "narrow it with collection=" in message


def test_get_one_no_match_lists_what_is_registered(cm):
    with pytest.raises(ComponentNotFoundError) as info:
        cm.get_one(name="controlnet", collection="sdxl")
    message = str(info.value)
    assert "no component matches 'controlnet' in collection 'sdxl'; registered: " in message
    assert cm.get_ids("unet")[0] in message


def test_get_one_on_empty_manager_says_none_registered():
    with pytest.raises(ComponentNotFoundError, match="registered: none"):
        ComponentsManager().get_one("unet")


def test_get_one_filters_by_collection_and_load_id():
    manager = ComponentsManager()
    base = with_load_id(torch.nn.Linear(2, 2), "sdxl-base|unet|null|null")
    refiner = with_load_id(torch.nn.Linear(2, 2), "sdxl-refiner|unet|null|null")
    manager.add("unet", base, collection="base")
    manager.add("unet", refiner, collection="refiner")
    assert manager.get_one("unet", collection="refiner") is refiner
    assert manager.get_one("unet", load_id="sdxl-base|unet|null|null") is base
    with pytest.raises(AmbiguousComponentError):
        manager.get_one("unet")
    with pytest.raises(ComponentNotFoundError, match="in collection 'base' with load_id 'x|y'"):
        manager.get_one("unet", collection="base", load_id="x|y")


def test_find_by_load_id():
    manager = ComponentsManager()
    unet = with_load_id(torch.nn.Linear(2, 2), "repo|unet|null|null")
    manager.add("unet", unet, collection="a")
    assert manager.find_by_load_id("repo|unet|null|null") is unet
    assert manager.find_by_load_id("repo|vae|null|null") is None


# --- duplicates ------------------------------------------------------------------------------------


def test_duplicate_load_id_warning_text():
    manager = ComponentsManager()
    load_id = "stabilityai/stable-diffusion-xl-base-1.0|text_encoder|null|null"
    first = with_load_id(torch.nn.Linear(2, 2), load_id)
    second = with_load_id(torch.nn.Linear(2, 2), load_id)
    first_id = manager.add("text_encoder", first)
    second_id = f"text_encoder_duplicated_{id(second)}"
    expected = (
        f"ComponentsManager: adding component '{second_id}', but it has duplicate load_id '{load_id}' "
        f"with existing components: {first_id}. To remove a duplicate, call "
        "`components_manager.remove('<component_id>')`."
    )
    with pytest.warns(UserWarning) as record:
        assert manager.add("text_encoder_duplicated", second) == second_id
    assert [str(w.message) for w in record] == [expected]
    assert len(manager) == 2  # warned, not removed


def test_no_duplicate_warning_without_a_real_load_id(recwarn):
    manager = ComponentsManager()
    manager.add("a", with_load_id(torch.nn.Linear(2, 2), "null|null|null|null"))
    manager.add("b", with_load_id(torch.nn.Linear(2, 2), "null|null|null|null"))
    manager.add("c", torch.nn.Linear(2, 2))
    assert not recwarn.list


def test_same_object_under_another_name_warns():
    manager = ComponentsManager()
    unet = torch.nn.Linear(2, 2)
    first = manager.add("unet", unet)
    with pytest.warns(UserWarning, match=f"is the same object as the existing component '{first}'"):
        second = manager.add("unet_copy", unet)
    assert second != first and len(manager) == 2


# --- collections -----------------------------------------------------------------------------------


def test_same_name_same_collection_replaces(caplog):
    manager = ComponentsManager()
    old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    old_id = manager.add("unet", old, collection="sdxl")
    with caplog.at_level("INFO", logger="diffblocks.components.manager"):  # a routine swap: logged at INFO
        new_id = manager.add("unet", new, collection="sdxl")
    assert f"replacing '{old_id}' in collection 'sdxl' with '{new_id}'" in caplog.text
    assert list(manager.components) == [new_id]
    assert manager.collections == {"sdxl": {new_id}}


def test_replaced_component_in_another_collection_stays():
    manager = ComponentsManager()
    old, new = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    old_id = manager.add("unet", old, collection="a")
    manager.add("unet", old, collection="b")
    new_id = manager.add("unet", new, collection="a")
    assert set(manager.components) == {old_id, new_id}
    assert manager.collections == {"a": {new_id}, "b": {old_id}}


def test_same_name_in_different_collections_coexist():
    manager = ComponentsManager()
    a = manager.add("unet", torch.nn.Linear(2, 2), collection="a")
    b = manager.add("unet", torch.nn.Linear(2, 2), collection="b")
    assert manager.collections == {"a": {a}, "b": {b}}


def test_remove_collection_keeps_shared_components():
    manager = ComponentsManager()
    shared = manager.add("vae", torch.nn.Linear(2, 2), collection="a")
    manager.add("vae", manager.components[shared], collection="b")
    own = manager.add("unet", torch.nn.Linear(2, 2), collection="a")
    assert manager.remove_collection("a") == [own]
    assert list(manager.components) == [shared]
    assert manager.collections == {"b": {shared}}


def test_remove_unknown_id_raises(cm):
    with pytest.raises(ComponentNotFoundError, match="no component matches 'unet_1'; registered: "):
        cm.remove("unet_1")


def test_remove_drops_id_from_collections(cm):
    for cid in cm.get_ids():
        cm.remove(cid)
    assert cm.components == {} and cm.collections == {}


# --- bulk look-ups ---------------------------------------------------------------------------------


def test_get_components_by_names(cm):
    got = cm.get_components_by_names(["unet", "vae", "controlnet"])
    assert list(got) == ["unet", "vae"]  # names nobody registered are left out
    assert got["unet"] is cm.get_one("unet")


def test_get_components_by_names_ambiguous_and_narrowed(cm):
    other = torch.nn.Linear(2, 2)
    cm.add("unet", other, collection="refiner")
    with pytest.raises(AmbiguousComponentError, match="'unet' matches more than one component"):
        cm.get_components_by_names(["unet"])
    assert cm.get_components_by_names(["unet"], collection="refiner") == {"unet": other}


def test_get_components_by_ids(cm):
    ids = cm.get_ids("unet|vae")
    assert set(cm.get_components_by_ids(ids)) == {"unet", "vae"}
    assert set(cm.get_components_by_ids(ids, return_dict_with_names=False)) == set(ids)
    with pytest.raises(ComponentNotFoundError):
        cm.get_components_by_ids(["nope_1"])


# --- repr ------------------------------------------------------------------------------------------


def test_repr_table():
    manager = ComponentsManager()
    unet = with_load_id(torch.nn.Linear(1000, 1000).to(torch.float16), "repo|unet|fp16|null")
    uid = manager.add("unet", unet, collection="sdxl")
    sid = manager.add("scheduler", Scheduler())
    lines = repr(manager).splitlines()
    assert lines[0] == "ComponentsManager (2 components)"
    header = ["id", "class", "collection", "device", "dtype", "size", "load_id"]
    assert [c.strip() for c in lines[1].split(" | ")] == header
    unet_row = [c.strip() for c in lines[3].split(" | ")]
    assert unet_row == [uid, "Linear", "sdxl", "cpu", "float16", "2.00 MB", "repo|unet|fp16|null"]
    assert [c.strip() for c in lines[4].split(" | ")] == [sid, "Scheduler", "-", "-", "-", "-", "-"]
    assert repr(ComponentsManager()) == "ComponentsManager (0 components)"


# --- release and threads ---------------------------------------------------------------------------


@pytest.mark.parametrize("offload", [False, True])
def test_remove_releases_the_component(offload):
    manager = ComponentsManager()
    if offload:
        manager.enable_auto_cpu_offload("cpu", 0)
    unet = torch.nn.Linear(2, 2)
    ref = weakref.ref(unet)
    cid = manager.add("unet", unet, collection="sdxl")
    if offload:
        unet(torch.ones(1, 2))
        assert hasattr(unet, "_hf_hook")
    manager.remove(cid)
    assert not hasattr(unet, "_hf_hook") and "forward" not in vars(unet)
    del unet
    assert ref() is None  # freed by reference counting alone: no cycle left behind
    gc.collect()


class CriticalSection:
    """Shows whether two threads are ever inside the manager's registry at once, without relying on timing.

    The first thread to enter stays inside until a second thread arrives: either it enters too (no mutual
    exclusion: recorded in ``most``) or it is found waiting for the manager's lock (exclusion works).
    """

    def __init__(self):
        self.cond = threading.Condition()
        self.inside: set[int] = set()
        self.first: int | None = None
        self.second_arrived = False
        self.second_waited = False
        self.most = 0

    def enter(self):
        me = threading.get_ident()
        with self.cond:
            self.inside.add(me)
            self.most = max(self.most, len(self.inside))
            if self.first is None:
                self.first = me
                self.cond.notify_all()
                arrived = self.cond.wait_for(lambda: self.second_arrived, timeout=60)
                assert arrived, "the second thread never reached the manager"
            else:
                self.arrive()

    def leave(self):
        with self.cond:
            self.inside.discard(threading.get_ident())

    def blocked(self):
        with self.cond:
            if threading.get_ident() != self.first:
                self.second_waited = True
                self.arrive()

    def arrive(self):
        with self.cond:
            self.second_arrived = True
            self.cond.notify_all()


class WatchedLock:
    """The manager's lock, telling ``section`` when a thread finds it held by another and waits for it."""

    def __init__(self, inner, section: CriticalSection):
        self.inner, self.section = inner, section

    def __enter__(self):
        acquire = getattr(self.inner, "acquire", None)
        if acquire is None:  # not a lock (a stand-in that excludes nothing): nothing to watch
            return self.inner.__enter__()
        if not acquire(blocking=False):
            self.section.blocked()
            acquire()
        return self

    def __exit__(self, *exc):
        release = getattr(self.inner, "release", None)
        return release() if release is not None else self.inner.__exit__(*exc)


class WatchedEntries(dict):
    """The manager's registry; each write (and the snapshot's read) is the critical section."""

    def __init__(self, entries, section: CriticalSection):
        super().__init__(entries)
        self.section = section

    def _inside(self, method, *args):
        self.section.enter()
        try:
            return method(*args)
        finally:
            self.section.leave()

    def __setitem__(self, key, value):
        self._inside(super().__setitem__, key, value)

    def __delitem__(self, key):
        self._inside(super().__delitem__, key)

    def items(self):
        return self._inside(super().items)


OPERATIONS = {
    "add": lambda manager, ids, n: manager.add(f"new{n}", torch.nn.Linear(1, 1), collection="c"),
    "remove": lambda manager, ids, n: manager.remove(ids[n]),
    "snapshot": lambda manager, ids, n: manager.components,
}


@pytest.mark.parametrize("first, second", [("add", "add"), ("remove", "remove"), ("add", "remove"),
                                           ("snapshot", "add"), ("remove", "snapshot")])
def test_one_thread_at_a_time_in_the_registry(first, second):
    """The second thread starts only once the first is inside the registry, which it leaves only when the
    second is inside too (the lock is missing: the test fails) or waits for the lock (the test passes)."""
    manager = ComponentsManager()
    ids = [manager.add(f"old{n}", torch.nn.Linear(1, 1)) for n in range(2)]
    section = CriticalSection()
    manager._entries = WatchedEntries(manager._entries, section)
    manager._lock = WatchedLock(manager._lock, section)
    errors = []

    def run(operation, n):
        try:
            OPERATIONS[operation](manager, ids, n)
        except BaseException as err:  # reported by the main thread
            errors.append(err)
            section.arrive()  # the first thread need not wait any longer

    threads = [threading.Thread(target=run, args=(op, n)) for n, op in enumerate((first, second))]
    threads[0].start()
    with section.cond:
        assert section.cond.wait_for(lambda: section.first is not None or errors, timeout=60)
    threads[1].start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert section.most == 1, "two threads were inside the manager's registry at once"
    assert section.second_waited, "the second thread never waited for the first"
    expected = 2 + [first, second].count("add") - [first, second].count("remove")
    assert len(manager.components) == expected


@pytest.mark.filterwarnings("ignore:ComponentsManager")
def test_concurrent_adds_and_removes_leave_a_consistent_registry():
    manager = ComponentsManager()
    kept, errors = [], []
    barrier = threading.Barrier(8)

    def work(worker):
        try:
            barrier.wait()
            for i in range(40):
                obj = torch.nn.Linear(1, 1)
                cid = manager.add(f"m{worker}_{i}", obj, collection=f"c{i % 3}")
                manager.add("shared", obj, collection=f"w{worker}")  # replaces within w{worker}
                repr(manager)
                if i % 2:
                    manager.remove(cid)
                else:
                    kept.append(cid)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    components, collections = manager.components, manager.collections
    assert set(kept) <= set(components)
    for members in collections.values():
        assert members and members <= set(components)
    for w in range(8):  # one "shared" per worker collection
        assert len(collections[f"w{w}"]) == 1
    in_any = set().union(*collections.values())
    assert set(components) == in_any
