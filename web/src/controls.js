// What a seed does after each Run, as ComfyUI's "control after generate": stay (fixed), count up or down, or
// take a random value. A node keeps its choices in `data.control` ({input: mode}); a saved document in
// `ui.controls`.
import { bounds, defaultOf } from './schema.js';

export const CONTROLS = ['fixed', 'increment', 'decrement', 'randomize'];
const RANDOM_TOP = 2 ** 32 - 1; // random seeds fit 32 bits, as A1111's and Civitai's do

/** Whether input `name`, drawn as widget `kind`, offers a control: an integer seed. */
export const hasControl = (name, kind) => kind === 'integer' && name === 'seed';

/** The value after a Run of an input whose control is `mode`, within the input's `{min, max}`. */
export function nextValue(mode, value, { min, max }) {
  const low = min ?? 0;
  const high = Math.min(max ?? Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER);
  if (mode === 'increment') return value >= high ? low : value + 1;
  if (mode === 'decrement') return value <= low ? high : value - 1;
  if (mode === 'randomize') return low + Math.floor(Math.random() * (Math.min(high, RANDOM_TOP) - low + 1));
  return value;
}

/** `nodes` with every controlled, unwired input moved on (`spec(type)` gives a node type's catalog entry);
 * the same array when no control moves anything. */
export function controlsAfterRun(nodes, edges, spec) {
  let moved = false;
  const next = nodes.map((node) => {
    const inputs = (spec(node.data.nodeType) || {}).inputs || {};
    const values = { ...node.data.values };
    let changed = false;
    for (const [name, mode] of Object.entries(node.data.control || {})) {
      if (mode === 'fixed' || !inputs[name]) continue;
      if (edges.some((edge) => edge.target === node.id && edge.targetHandle === name)) continue;
      values[name] = nextValue(mode, values[name] ?? defaultOf(inputs[name]) ?? 0, bounds(inputs[name].schema, true));
      changed = true;
    }
    if (!changed) return node;
    moved = true;
    return { ...node, data: { ...node.data, values } };
  });
  return moved ? next : nodes;
}
