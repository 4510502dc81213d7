// Copy and paste of nodes: the selection kept as a saved document (graph.js toDocument), pasted under fresh ids.
import { GROUP_TYPE, NOTE_TYPE, PREVIEW_TYPE, freshId, fromDocument, isLink, toDocument } from './graph.js';

const PASTE_OFFSET = 40; // where a paste goes when the pointer is not over the canvas: this far from the copy

/** The selected nodes as a document, with every wire into them; null when no node is selected. */
export function copyOf(nodes, edges) {
  const chosen = nodes.filter((node) => node.selected);
  if (!chosen.length) return null;
  const ids = new Set(chosen.map((node) => node.id));
  return toDocument(chosen, edges.filter((edge) => ids.has(edge.target)));
}

/** The nodes and edges that pasting `clip` into a graph of `nodes` adds: fresh ids, selected. A wire between two
 * copied nodes joins their copies; a wire from a node outside the copy is kept only with `keepInputs` (ComfyUI's
 * Ctrl+Shift+V), and only while that node is still in the graph. `at` (flow coordinates) is where the copy's top
 * left corner goes; null puts it a little below and right of the original. */
export function pasted(clip, nodes, at, keepInputs) {
  const previews = (clip.ui && clip.ui.previews) || {};
  const notes = (clip.ui && clip.ui.notes) || {};
  const groups = (clip.ui && clip.ui.groups) || {};
  const ids = {};
  const taken = [...nodes];
  const typeOf = (id) => {
    if (id in clip.nodes) return clip.nodes[id].type;
    return id in notes ? NOTE_TYPE : id in groups ? GROUP_TYPE : PREVIEW_TYPE;
  };
  for (const id of [...Object.keys(clip.nodes), ...Object.keys(previews), ...Object.keys(notes), ...Object.keys(groups)]) {
    ids[id] = freshId(typeOf(id), taken);
    taken.push({ id: ids[id] });
  }
  const present = new Set(nodes.map((node) => node.id));
  const relink = (link) => {
    if (link.node in ids) return { node: ids[link.node], output: link.output };
    return keepInputs && present.has(link.node) ? link : null;
  };
  const copy = { nodes: {}, ui: { previews: {}, positions: {} } };
  for (const [id, spec] of Object.entries(clip.nodes)) {
    const inputs = {};
    for (const [name, value] of Object.entries(spec.inputs || {})) {
      const next = isLink(value) ? relink(value) : value;
      if (next !== null) inputs[name] = next;
    }
    copy.nodes[ids[id]] = { type: spec.type, inputs };
  }
  for (const [id, source] of Object.entries(previews)) copy.ui.previews[ids[id]] = source && relink(source);
  const positions = (clip.ui && clip.ui.positions) || {};
  const corner = Object.values(positions).reduce(
    (most, p) => ({ x: Math.min(most.x, p.x), y: Math.min(most.y, p.y) }), { x: Infinity, y: Infinity });
  const shift = at ? { x: at.x - corner.x, y: at.y - corner.y } : { x: PASTE_OFFSET, y: PASTE_OFFSET };
  for (const [id, p] of Object.entries(positions)) {
    if (id in ids) copy.ui.positions[ids[id]] = { x: p.x + shift.x, y: p.y + shift.y };
  }
  // what the page keeps per node, under the copies' ids
  const rekeyed = (byId) => Object.fromEntries(Object.entries(byId || {}).filter(([id]) => id in ids)
    .map(([id, value]) => [ids[id], value]));
  Object.assign(copy.ui, { controls: rekeyed(clip.ui && clip.ui.controls), notes: rekeyed(notes), groups: rekeyed(groups) });
  copy.ui.collapsed = ((clip.ui && clip.ui.collapsed) || []).filter((id) => id in ids).map((id) => ids[id]);
  const added = fromDocument(copy);
  return { nodes: added.nodes.map((node) => ({ ...node, selected: true })), edges: added.edges };
}
