// The page's one store: the graph (with its undo history, kept in the browser), the catalog, validation
// problems, the running job and what the server's events say about each node.
import { addEdge, applyEdgeChanges, applyNodeChanges } from '@xyflow/react';
import { create } from 'zustand';

import { ApiError, api } from './api.js';
import { copyOf, pasted } from './clipboard.js';
import {
  DEFAULT_WORKFLOW, PREVIEW_SPEC, PREVIEW_TYPE, fromDocument, freshId, makeEdge, makesCycle, toDocument, toWorkflow,
} from './graph.js';
import { createHistory } from './history.js';
import { autosave, keepClipboard, savedClipboard, savedWorkflow } from './saved.js';
import { socketsMatch } from './schema.js';

const VALIDATE_DELAY_MS = 250;
const FINAL = new Set(['done', 'failed', 'cancelled', 'lost']);
const ACTIVE = new Set(['validating', 'submitting', 'queued', 'running']);

/** Whether Run (or Ctrl+Enter) may start a job now. */
export const canRun = (state) => !ACTIVE.has(state.run.status) && state.connection === 'connected';
export const isActive = (run) => ACTIVE.has(run.status);

/** The artifact ids in an output value ({"artifact": id} or a list of them). */
export function artifactsIn(value) {
  if (Array.isArray(value)) return value.flatMap(artifactsIn);
  if (value && typeof value === 'object' && typeof value.artifact === 'string') return [value.artifact];
  return [];
}

// a node.preview event carries {"artifact": sha} or "image": "data:image/png;base64,..."
function previewSource(event) {
  const candidates = [event.image, event.artifact, event.preview];
  for (const value of candidates) {
    if (typeof value === 'string' && value.startsWith('data:')) return value;
    if (typeof value === 'string' && /^[0-9a-f]{64}$/.test(value)) return api.artifactUrl(value);
    const [sha] = artifactsIn(value);
    if (sha) return api.artifactUrl(sha);
  }
  return null;
}

function groupErrors(errors) {
  const byNode = {};
  const general = [];
  for (const error of errors || []) {
    if (error.node === null || error.node === undefined) {
      general.push(error.message);
      continue;
    }
    const key = error.input || '';
    byNode[error.node] = byNode[error.node] || {};
    byNode[error.node][key] = [...(byNode[error.node][key] || []), error.message];
  }
  return { byNode, general };
}

const NO_ERRORS = { byNode: {}, general: [] };

/** The model the graph on the page loads (its LoadComponents node's repo), else the embedded one. */
export function modelRepo() {
  const load = useStore.getState().nodes.find((node) => node.data && node.data.nodeType === 'LoadComponents');
  return (load && load.data.values.repo) || 'embedded';
}

export const useStore = create((set, get) => {
  let validateTimer = null;
  let validateToken = 0;
  let earlyEvents = []; // events that arrived before POST /api/jobs answered with their job id
  const history = createHistory();

  const snapshot = () => ({ nodes: get().nodes, edges: get().edges });
  // call before each change the user may want to undo; `key` joins quick edits of one input into one step
  const remember = (key = null) => {
    history.remember(snapshot(), key);
    set({ undoable: history.counts() });
  };

  const setStatus = (id, patch) =>
    set((state) => ({ nodeStatus: { ...state.nodeStatus, [id]: { ...state.nodeStatus[id], ...patch } } }));

  const graphChanged = () => {
    clearTimeout(validateTimer);
    validateTimer = setTimeout(() => get().validate(), VALIDATE_DELAY_MS);
  };

  const restore = (shot) => {
    set({ nodes: shot.nodes, edges: shot.edges, undoable: history.counts() });
    graphChanged();
  };

  async function collectOutputs(job) {
    const result = await api.job(job);
    const outputs = result.outputs || {};
    const shas = [];
    for (const node of Object.keys(outputs)) {
      for (const value of Object.values(outputs[node] || {})) shas.push(...artifactsIn(value));
    }
    set((state) => ({
      outputs: { ...state.outputs, ...outputs },
      gallery: [...state.gallery, ...shas.filter((sha) => !state.gallery.some((item) => item.sha === sha))
        .map((sha) => ({ sha, job }))],
    }));
    return result;
  }

  function finishRun(status, extra = {}) {
    const run = get().run;
    const seconds = run.startedAt ? (performance.now() - run.startedAt) / 1000 : null;
    set({ run: { ...run, status, seconds, ...extra } });
    // nodes still waiting when the job ends did not run
    const statuses = get().nodeStatus;
    const next = {};
    for (const [id, status_] of Object.entries(statuses)) {
      if (status_.state === 'queued') next[id] = { state: 'idle' };
      else if (status_.state === 'running') next[id] = { ...status_, state: status === 'cancelled' ? 'cancelled' : 'idle' };
      else next[id] = status_;
    }
    set({ nodeStatus: next });
  }

  const handlers = {
    'job.queued': () => set((state) => ({ run: { ...state.run, status: 'queued' } })),
    'job.started': (event) => {
      set((state) => ({ run: { ...state.run, status: 'running' } }));
      (event.nodes || []).forEach((id) => setStatus(id, { state: 'queued' }));
    },
    'node.cached': (event) => setStatus(event.node, { state: 'cached', step: null, total: null }),
    'node.started': (event) => setStatus(event.node, { state: 'running', step: 0, total: null, message: null }),
    'node.progress': (event) => setStatus(event.node, { state: 'running', step: event.step, total: event.total }),
    'node.preview': (event) => {
      const src = previewSource(event);
      if (src) setStatus(event.node, { preview: src });
    },
    'node.finished': (event) => {
      setStatus(event.node, { state: 'done', seconds: event.seconds });
      if (event.outputs && typeof event.outputs === 'object') {
        set((state) => ({ outputs: { ...state.outputs, [event.node]: event.outputs } }));
      }
    },
    'job.finished': async (event) => {
      try {
        await collectOutputs(event.job);
      } catch (error) {
        set({ banner: `the job finished but its outputs could not be read: ${error.message}` });
      }
      finishRun('done', { executed: event.executed || [], cached: event.cached || [] });
    },
    'job.failed': (event) => {
      if (event.node) setStatus(event.node, { state: 'failed', message: event.message, input: event.input || null });
      set({ errors: groupErrors([{ node: event.node, input: event.input, message: event.message }]) });
      finishRun('failed', { message: event.message });
    },
    'job.cancelled': () => finishRun('cancelled'),
  };

  return {
    catalog: null,
    nodes: [],
    edges: [],
    nodeStatus: {},
    outputs: {},
    errors: NO_ERRORS,
    gallery: [],
    run: { job: null, status: 'idle' },
    connection: 'connecting',
    banner: null,
    lastSeq: null,
    graphVersion: 0,
    undoable: { undo: 0, redo: 0 },

    spec(type) {
      if (type === PREVIEW_TYPE) return PREVIEW_SPEC;
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
        nodes, edges, nodeStatus: {}, outputs: {}, errors: NO_ERRORS, banner: null, graphVersion: state.graphVersion + 1,
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
        edges: [...get().edges, ...added.edges],
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
      // an input takes one wire: a new one replaces the old
      const kept = get().edges.filter((edge) => !(edge.target === connection.target && edge.targetHandle === connection.targetHandle));
      const edge = makeEdge(connection.source, connection.sourceHandle, connection.target, connection.targetHandle);
      remember();
      set({ edges: addEdge(edge, kept) });
      graphChanged();
    },

    addNode(type, position) {
      const id = freshId(type, get().nodes);
      const kind = type === PREVIEW_TYPE ? 'preview' : 'block';
      const node = { id, type: kind, position, data: { nodeType: type, values: {} } };
      remember();
      set({ nodes: [...get().nodes, node] });
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

    async validate() {
      clearTimeout(validateTimer);
      const token = ++validateToken;
      try {
        const result = await api.validate(get().workflow());
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

    async runWorkflow() {
      set({ run: { job: null, status: 'validating' } });
      const problems = await get().validate();
      if (problems && problems.length) {
        set({ run: { job: null, status: 'invalid' } });
        return;
      }
      const queued = {};
      get().nodes.forEach((node) => node.type === 'block' && (queued[node.id] = { state: 'queued' }));
      earlyEvents = [];
      set({ nodeStatus: queued, run: { job: null, status: 'submitting', startedAt: performance.now() }, banner: null });
      try {
        const { job } = await api.submit(get().document());  // the layout too: output PNGs carry it
        set((state) => ({ run: { ...state.run, job, status: 'queued' } }));
        const early = earlyEvents.filter((event) => event.job === job);
        earlyEvents = [];
        early.forEach((event) => get().handleEvent(event));
      } catch (error) {
        set({ errors: error.errors && error.errors.length ? groupErrors(error.errors) : { byNode: {}, general: [error.message] } });
        finishRun('failed', { message: error.message });
      }
    },

    async cancel() {
      const { job } = get().run;
      if (!job) return;
      try {
        await api.cancel(job);
      } catch (error) {
        set({ banner: `could not cancel: ${error.message}` });
      }
    },

    handleEvent(event) {
      if (typeof event.seq === 'number') set({ lastSeq: event.seq });
      const run = get().run;
      if (!run.job) {
        if (run.status === 'submitting') earlyEvents.push(event);
        return;
      }
      if (event.job !== run.job || FINAL.has(run.status)) return;
      const handler = handlers[event.type];
      if (handler) handler(event);
    },

    /** After the event socket (re)connects: catch up with a job that may have ended while it was down. */
    async resync() {
      const { job, status } = get().run;
      if (!job || FINAL.has(status)) return;
      try {
        const result = await api.job(job);
        if (result.status === 'done') {
          await collectOutputs(job);
          finishRun('done', { executed: result.executed || [], cached: result.cached || [] });
        } else if (result.status === 'failed' && result.error) {
          handlers['job.failed']({ job, ...result.error });
        } else if (result.status === 'cancelled') finishRun('cancelled');
      } catch (error) {
        if (error.status === 404) {
          finishRun('lost');
          set({ banner: 'the server restarted; the running job was lost. Press Run to queue it again.' });
        }
      }
    },

    setConnection(connection) {
      set({ connection });
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
