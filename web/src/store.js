// The page's one store: the graph (with its undo history, kept in the browser), the catalog and validation
// problems; the jobs, and what the server's events say about each node, come from jobs.js.
import { addEdge, applyEdgeChanges, applyNodeChanges } from '@xyflow/react';
import { create } from 'zustand';

import { ApiError, api } from './api.js';
import { copyOf, pasted } from './clipboard.js';
import { controlsAfterRun } from './controls.js';
import {
  DEFAULT_WORKFLOW, GROUP_SIZE, GROUP_SPEC, GROUP_TYPE, NOTE_SPEC, NOTE_TYPE, PREVIEW_SPEC, PREVIEW_TYPE, fromDocument,
  freshId, groupNode, kindOf, makeEdge, makesCycle, toDocument, toWorkflow,
} from './graph.js';
import { createHistory } from './history.js';
import { jobsSlice } from './jobs.js';
import { NO_ERRORS, groupErrors } from './problems.js';
import { autosave, keepClipboard, savedClipboard, savedWorkflow } from './saved.js';
import { inputFor, outputFor } from './search.js';
import { socketsMatch } from './schema.js';

export { artifactsIn, canRun, isActive } from './jobs.js';

const VALIDATE_DELAY_MS = 250;
const GROUP_PADDING = 24; // around the nodes Ctrl+G groups
const GROUP_TITLE = 34; // the group's title bar above them

/** A node's box in flow coordinates (its size as drawn; a node not drawn yet counts as a block node's width). */
function boxOf(node) {
  const size = node.measured || {};
  return { x: node.position.x, y: node.position.y, width: size.width ?? node.width ?? 250, height: size.height ?? node.height ?? 0 };
}

/** Whether `box` lies wholly inside `area` (both {x, y, width, height}). */
const within = (box, area) => box.x >= area.x && box.y >= area.y && box.x + box.width <= area.x + area.width &&
  box.y + box.height <= area.y + area.height;

/** The model the graph on the page loads (its LoadComponents node's repo), else the embedded one. */
export function modelRepo() {
  const load = useStore.getState().nodes.find((node) => node.data && node.data.nodeType === 'LoadComponents');
  return (load && load.data.values.repo) || 'embedded';
}

export const useStore = create((set, get) => {
  let validateTimer = null;
  let validateToken = 0;
  const history = createHistory();
  let carried = {}; // during a drag: {group id: {from: position, members: {id: position}}}

  const snapshot = () => ({ nodes: get().nodes, edges: get().edges });
  // call before each change the user may want to undo; `key` joins quick edits of one input into one step
  const remember = (key = null) => {
    history.remember(snapshot(), key);
    set({ undoable: history.counts() });
  };

  const graphChanged = () => {
    clearTimeout(validateTimer);
    validateTimer = setTimeout(() => get().validate(), VALIDATE_DELAY_MS);
  };

  // adds the wire `connection` if it is allowed; an input takes one wire, so it replaces the input's old one
  const wire = (connection) => {
    if (!connection.sourceHandle || !connection.targetHandle || !get().isValidConnection(connection)) return;
    const kept = get().edges.filter((edge) => !(edge.target === connection.target && edge.targetHandle === connection.targetHandle));
    const edge = makeEdge(connection.source, connection.sourceHandle, connection.target, connection.targetHandle);
    set({ edges: addEdge(edge, kept) });
  };

  // sets `flag` on block nodes `ids` (default: the selected ones), or clears it when all of them have it; one undo
  // step; false when there is no such node
  const toggleFlag = (flag, ids = null) => {
    const chosen = get().nodes.filter((node) => (ids ? ids.includes(node.id) : node.selected) && node.type === 'block');
    if (!chosen.length) return false;
    const on = chosen.some((node) => !node.data[flag]);
    const changing = new Set(chosen.map((node) => node.id));
    remember();
    set({
      nodes: get().nodes.map((node) => {
        if (!changing.has(node.id)) return node;
        const data = { ...node.data, [flag]: on };
        if (!on) delete data[flag];
        return { ...node, data };
      }),
    });
    return true;
  };

  const restore = (shot) => {
    set({ nodes: shot.nodes, edges: shot.edges, undoable: history.counts() });
    graphChanged();
  };

  return {
    ...jobsSlice(set, get),
    catalog: null,
    nodes: [],
    edges: [],
    errors: NO_ERRORS,
    connection: 'connecting',
    banner: null,
    notice: null, // what a graph loaded from another tool left out (a checkpoint the server lacks, a LoRA, nodes)
    graphVersion: 0,
    undoable: { undo: 0, redo: 0 },

    spec(type) {
      if (type === PREVIEW_TYPE) return PREVIEW_SPEC;
      if (type === NOTE_TYPE) return NOTE_SPEC;
      if (type === GROUP_TYPE) return GROUP_SPEC;
      return (get().catalog || {})[type] || null;
    },

    setCatalog(catalog) {
      set({ catalog });
      if (get().nodes.length > 0) return;
      // the graph left in this browser (a reload, a closed tab), else the default one
      const saved = savedWorkflow();
      if (saved) {
        try {
          get().loadDocument(saved, { undoable: false });
          return;
        } catch {
          // kept by another version of the page and no longer readable: start afresh
        }
      }
      get().loadDocument(DEFAULT_WORKFLOW, { undoable: false });
    },

    loadDocument(document, { undoable = true } = {}) {
      const { nodes, edges } = fromDocument(document);
      if (undoable) remember();
      set((state) => ({
        nodes, edges, nodeStatus: {}, outputs: {}, errors: NO_ERRORS, banner: null, notice: null,
        graphVersion: state.graphVersion + 1,
      }));
      graphChanged();
    },

    document: () => toDocument(get().nodes, get().edges),
    workflow: () => toWorkflow(get().nodes, get().edges),

    /** Before a drag or a deletion (React Flow's onNodeDragStart, onSelectionDragStart, onBeforeDelete). */
    rememberGraph() {
      remember();
    },

    undo() {
      const shot = history.undo(snapshot());
      if (shot) restore(shot);
    },

    redo() {
      const shot = history.redo(snapshot());
      if (shot) restore(shot);
    },

    /** An image dropped or pasted on the canvas: uploaded, then a LoadImage node holding it at `position`. */
    async addImage(file, position) {
      try {
        const { artifact } = await api.upload(file);
        return get().addNode('LoadImage', position, null, { image: { artifact } });
      } catch (error) {
        set({ banner: `could not add ${file.name || 'the image'}: ${error.message}` });
        return null;
      }
    },

    /** Keeps the selected nodes for paste (in this browser, so another tab can paste them); returns how many. */
    copy() {
      const clip = copyOf(get().nodes, get().edges);
      if (clip) keepClipboard(clip);
      return clip ? Object.keys(clip.ui.positions).length : 0;
    },

    /** Adds the copied nodes, selected, with their top left at `at` (flow coordinates; null: beside the
     * originals); `keepInputs` keeps their wires from nodes that were not copied. Returns how many were added. */
    paste(at = null, keepInputs = false) {
      const clip = savedClipboard();
      if (!clip) return 0;
      let added;
      try {
        added = pasted(clip, get().nodes, at, keepInputs);
      } catch (error) {
        set({ banner: `could not paste: ${error.message}` });
        return 0;
      }
      remember();
      set({
        nodes: [...get().nodes.map((node) => (node.selected ? { ...node, selected: false } : node)), ...added.nodes],
        edges: [...get().edges.map((edge) => (edge.selected ? { ...edge, selected: false } : edge)), ...added.edges],
      });
      graphChanged();
      return added.nodes.length;
    },

    onNodesChange(changes) {
      set({ nodes: applyNodeChanges(changes, get().nodes) });
      if (changes.some((change) => change.type === 'remove')) graphChanged();
    },

    onEdgesChange(changes) {
      set({ edges: applyEdgeChanges(changes, get().edges) });
      if (changes.some((change) => change.type === 'remove')) graphChanged();
    },

    /** Whether a wire from `connection.source`/`sourceHandle` to `target`/`targetHandle` is allowed. */
    isValidConnection(connection) {
      const byId = Object.fromEntries(get().nodes.map((node) => [node.id, node]));
      const source = byId[connection.source];
      const target = byId[connection.target];
      if (!source || !target) return false;
      const output = (get().spec(source.data.nodeType) || { outputs: {} }).outputs[connection.sourceHandle];
      const input = (get().spec(target.data.nodeType) || { inputs: {} }).inputs[connection.targetHandle];
      if (!output || !input) return false;
      const others = get().edges.filter((edge) => !(edge.target === connection.target && edge.targetHandle === connection.targetHandle));
      return socketsMatch(output.socket, input) && !makesCycle(others, connection.source, connection.target);
    },

    onConnect(connection) {
      if (!get().isValidConnection(connection)) return;
      remember();
      wire(connection);
      graphChanged();
    },

    /** Adds a node of `type` at `position` holding `values`; with `from` (a wire left on the empty canvas: {node,
     * handle, kind: 'source' | 'target', socket | input}), wires it to the socket the wire came from, in one step
     * to undo. */
    addNode(type, position, from = null, values = {}) {
      const id = freshId(type, get().nodes);
      const node = type === GROUP_TYPE ? groupNode(id, position, GROUP_SIZE)
        : { id, type: kindOf(type), position, data: { nodeType: type, values: { ...values } } };
      remember();
      set({ nodes: [...get().nodes, node] });
      const spec = from && get().spec(type);
      if (spec && from.kind === 'source') {
        wire({ source: from.node, sourceHandle: from.handle, target: id, targetHandle: inputFor(spec, from.socket) });
      } else if (spec) {
        wire({ source: id, sourceHandle: outputFor(spec, from.input), target: from.node, targetHandle: from.handle });
      }
      graphChanged();
      return id;
    },

    setValue(id, name, value) {
      remember(`${id}\n${name}`);
      set({
        nodes: get().nodes.map((node) => {
          if (node.id !== id) return node;
          const values = { ...node.data.values };
          if (value === undefined) delete values[name];
          else values[name] = value;
          return { ...node, data: { ...node.data, values } };
        }),
      });
      graphChanged();
    },

    /** Node `id` as a node of `type` (the preset an error names for the model wired in): the values and wires of
     * the inputs and outputs both types have are kept, the others dropped; undoable. */
    changeType(id, type) {
      const spec = get().spec(type);
      if (!spec) return;
      remember();
      set((state) => ({
        nodes: state.nodes.map((node) => (node.id !== id ? node : {
          ...node,
          data: {
            ...node.data,
            nodeType: type,
            values: Object.fromEntries(Object.entries(node.data.values).filter(([name]) => name in spec.inputs)),
          },
        })),
        edges: state.edges.filter((edge) => (edge.target !== id || edge.targetHandle in spec.inputs)
          && (edge.source !== id || edge.sourceHandle in spec.outputs)),
        nodeStatus: { ...state.nodeStatus, [id]: undefined },
      }));
      graphChanged();
    },

    /** Ctrl+G: a group around the selected nodes (selected itself, the nodes not). */
    groupSelected() {
      const chosen = get().nodes.filter((node) => node.selected);
      if (!chosen.length) return null;
      const boxes = chosen.map(boxOf);
      const left = Math.min(...boxes.map((b) => b.x)) - GROUP_PADDING;
      const top = Math.min(...boxes.map((b) => b.y)) - GROUP_PADDING - GROUP_TITLE;
      const right = Math.max(...boxes.map((b) => b.x + b.width)) + GROUP_PADDING;
      const bottom = Math.max(...boxes.map((b) => b.y + b.height)) + GROUP_PADDING;
      const id = freshId(GROUP_TYPE, get().nodes);
      remember();
      const group = { ...groupNode(id, { x: left, y: top }, { width: right - left, height: bottom - top }), selected: true };
      set({ nodes: [group, ...get().nodes.map((node) => (node.selected ? { ...node, selected: false } : node))] });
      return id;
    },

    /** A drag starts (React Flow's onNodeDragStart with the dragged nodes): each dragged group takes along the nodes
     * that are not dragged themselves and lie in it as ComfyUI counts it: a node whose centre is inside, a group
     * wholly inside. Remembered for undo. */
    dragStart(dragged) {
      remember();
      const moving = new Set(dragged.map((node) => node.id));
      carried = {};
      for (const group of dragged.filter((node) => node.type === 'box')) {
        const area = boxOf(group);
        const members = {};
        for (const node of get().nodes) {
          if (moving.has(node.id)) continue;
          const box = boxOf(node);
          const inside = node.type === 'box' ? within(box, area)
            : within({ x: box.x + box.width / 2, y: box.y + box.height / 2, width: 0, height: 0 }, area);
          if (inside) members[node.id] = { ...node.position };
        }
        carried[group.id] = { from: { ...group.position }, members };
      }
    },

    /** During a drag: the nodes inside each dragged group follow it. */
    drag(dragged) {
      const moves = {};
      for (const group of dragged) {
        const taken = carried[group.id];
        if (!taken) continue;
        const dx = group.position.x - taken.from.x;
        const dy = group.position.y - taken.from.y;
        for (const [id, at] of Object.entries(taken.members)) moves[id] = { x: at.x + dx, y: at.y + dy };
      }
      if (Object.keys(moves).length) set({ nodes: get().nodes.map((node) => (moves[node.id] ? { ...node, position: moves[node.id] } : node)) });
    },

    /** Ctrl+A: every node selected (wires too, so Delete clears the canvas). */
    selectAll() {
      set({
        nodes: get().nodes.map((node) => (node.selected ? node : { ...node, selected: true })),
        edges: get().edges.map((edge) => (edge.selected ? edge : { ...edge, selected: true })),
      });
    },

    /** Alt+C (or a node's ▾ button): the nodes `ids` (default: the selected ones) folded to their title bar, or,
     * when all of them are, unfolded. */
    toggleCollapse(ids = null) {
      toggleFlag('collapsed', ids);
    },

    /** Ctrl+B: the selected nodes bypassed (they do not run; what they take flows past them, see the server's
     * nodes/bypass.py), or, when all of them are, no longer. */
    toggleBypass() {
      if (toggleFlag('bypass')) graphChanged();
    },

    /** Sets what input `name` of node `id` does after each Run (controls.js). */
    setControl(id, name, mode) {
      remember();
      set({
        nodes: get().nodes.map((node) => {
          if (node.id !== id) return node;
          const control = { ...node.data.control, [name]: mode };
          if (mode === 'fixed') delete control[name];
          const data = { ...node.data, control };
          if (!Object.keys(control).length) delete data.control;
          return { ...node, data };
        }),
      });
    },

    /** Moves every controlled seed on (after a Run is submitted), as a step of its own to undo, as in ComfyUI:
     * Ctrl+Z just after a Run brings back the seed that Run used, and an undo of an earlier edit never takes a
     * seed back behind the user's Runs. */
    advanceSeeds() {
      const nodes = controlsAfterRun(get().nodes, get().edges, get().spec);
      if (nodes === get().nodes) return;
      remember();
      set({ nodes });
      graphChanged();
    },

    /** Asks the server for the graph's problems (with `targets`: only where those nodes need it). */
    async validate(targets = null) {
      clearTimeout(validateTimer);
      const token = ++validateToken;
      try {
        const result = await api.validate({ ...get().workflow(), ...(targets ? { targets } : {}) });
        if (token !== validateToken) return null;
        set({ errors: groupErrors(result.errors) });
        return result.errors || [];
      } catch (error) {
        if (token !== validateToken) return null;
        // unreachable server: the connection badge says so; validation runs again on reconnecting
        if (!(error instanceof ApiError)) return null;
        if (error.errors && error.errors.length) {
          set({ errors: groupErrors(error.errors) });
          return error.errors;
        }
        set({ errors: { byNode: {}, general: [`could not validate: ${error.message}`] } });
        return null;
      }
    },

    setConnection(connection) {
      set({ connection });
    },

    setNotice(notice) {
      set({ notice: notice || null });
    },

    setBanner(banner) {
      set({ banner });
    },
  };
});

// the graph is kept in this browser as it changes (saved.js); a reload brings it back (setCatalog)
const graphEdited = autosave(() => useStore.getState().document());
useStore.subscribe((state, previous) => {
  if (state.nodes !== previous.nodes || state.edges !== previous.edges) graphEdited();
});
