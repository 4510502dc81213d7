// Undo and redo for the graph: snapshots of {nodes, edges} taken just before each change.

const LIMIT = 100;
const COALESCE_MS = 1000; // edits to the same input within this time undo as one (typing a prompt)

/** An undo stack. `remember(current, key)` records `current` before a change; changes with the same `key`
 * in quick succession count as one. `undo(current)` / `redo(current)` return the snapshot to show, or null. */
export function createHistory() {
  let past = [];
  let future = [];
  let last = { key: null, at: 0 };

  return {
    remember(current, key = null) {
      const now = Date.now();
      const repeated = key !== null && key === last.key && now - last.at < COALESCE_MS;
      last = { key, at: now };
      if (repeated) return;
      past = [...past.slice(-(LIMIT - 1)), current];
      future = [];
    },
    undo(current) {
      if (!past.length) return null;
      future = [current, ...future];
      last = { key: null, at: 0 };
      const snapshot = past[past.length - 1];
      past = past.slice(0, -1);
      return snapshot;
    },
    redo(current) {
      if (!future.length) return null;
      past = [...past, current];
      last = { key: null, at: 0 };
      const [snapshot, ...rest] = future;
      future = rest;
      return snapshot;
    },
    counts: () => ({ undo: past.length, redo: future.length }),
  };
}
