// The jobs this page submits (a slice of the store, see store.js): the one it follows (its nodes' states,
// progress and previews, from the server's events), those queued behind it, and the images they made.
// Run while a job is on its way queues another, as in ComfyUI; each job that starts is followed in turn.
import { api } from './api.js';
import { needed } from './graph.js';
import { groupErrors } from './problems.js';

const FINAL = new Set(['done', 'failed', 'cancelled', 'lost']);
const ACTIVE = new Set(['validating', 'submitting', 'queued', 'running']);
const BUSY = new Set(['validating', 'submitting']); // Run waits these few milliseconds out
const FRONT = 1000; // the highest priority the server takes: ComfyUI's "queue front"
const MAX_BATCH = 100;

/** Whether Run (or Ctrl+Enter) may submit a job now; while one runs, it queues another. */
export const canRun = (state) => state.connection === 'connected' && !BUSY.has(state.run.status);
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

export function jobsSlice(set, get) {
  let submitting = 0; // POST /api/jobs calls not yet answered
  let early = []; // events that arrived before POST /api/jobs answered with their job id

  const setStatus = (id, patch) =>
    set((state) => ({ nodeStatus: { ...state.nodeStatus, [id]: { ...state.nodeStatus[id], ...patch } } }));
  const following = (job) => Boolean(job) && job === get().run.job;
  const dequeue = (job) => set((state) => ({ queued: state.queued.filter((id) => id !== job) }));

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

  /** A queued job of this page started: the page follows it now, its nodes' states replacing the last job's. */
  function follow(job) {
    dequeue(job);
    set({ run: { job, status: 'running', startedAt: performance.now() }, nodeStatus: {} });
  }

  function finishRun(job, status, extra = {}) {
    const run = get().run;
    if (run.job !== job) return; // the page follows a later job by now
    const seconds = run.startedAt ? (performance.now() - run.startedAt) / 1000 : null;
    set({ run: { ...run, status, seconds, ...extra } });
    // nodes still waiting when the job ends did not run
    const next = {};
    for (const [id, state] of Object.entries(get().nodeStatus)) {
      if (state.state === 'queued') next[id] = { state: 'idle' };
      else if (state.state === 'running') next[id] = { ...state, state: status === 'cancelled' ? 'cancelled' : 'idle' };
      else next[id] = state;
    }
    set({ nodeStatus: next });
  }

  // events of the followed job only
  const nodeHandlers = {
    'job.queued': () => set((state) => ({ run: { ...state.run, status: 'queued' } })),
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
  };

  // events of any job of this page
  const jobHandlers = {
    'job.started': (event) => {
      if (!following(event.job)) follow(event.job);
      set((state) => ({ run: { ...state.run, status: 'running' } }));
      (event.nodes || []).forEach((id) => setStatus(id, { state: 'queued' }));
    },
    'job.finished': async (event) => {
      dequeue(event.job);
      try {
        await collectOutputs(event.job);
      } catch (error) {
        set({ banner: `the job finished but its outputs could not be read: ${error.message}` });
      }
      finishRun(event.job, 'done', { executed: event.executed || [], cached: event.cached || [] });
    },
    'job.failed': (event) => {
      if (!following(event.job)) {
        dequeue(event.job);
        set({ banner: `a queued job failed: ${event.message}` });
        return;
      }
      if (event.node) setStatus(event.node, { state: 'failed', message: event.message, input: event.input || null });
      set({ errors: groupErrors([{ node: event.node, input: event.input, message: event.message }]) });
      finishRun(event.job, 'failed', { message: event.message });
    },
    'job.cancelled': (event) => {
      dequeue(event.job);
      finishRun(event.job, 'cancelled');
    },
  };

  return {
    nodeStatus: {},
    outputs: {},
    gallery: [],
    run: { job: null, status: 'idle' },
    queued: [], // this page's jobs waiting behind the followed one, oldest first
    jobEvents: 0, // counts the job.* events of every client's jobs (the History tab refreshes on it)
    lastSeq: null,
    batchCount: 1, // jobs one Run submits (ComfyUI's batch count), each with the next seeds

    setBatchCount(count) {
      set({ batchCount: Math.max(1, Math.min(MAX_BATCH, Math.floor(Number(count)) || 1)) });
    },

    /** Run: `batchCount` jobs, one after the other (a refused one stops the rest); options as runWorkflow's. */
    async runBatch(options = {}) {
      for (let i = 0; i < get().batchCount; i += 1) {
        if (!(await get().runWorkflow(options))) return;
      }
    },

    /** Submits the graph; `front` puts it ahead of every job waiting (Ctrl+Shift+Enter, Shift+click on Run);
     * `targets` (node ids) runs only what they need (Run selected). Returns the job id, or null when refused. */
    async runWorkflow({ front = false, targets = null } = {}) {
      const behind = isActive(get().run); // a job of this page is on its way: this one queues behind it
      if (!behind) set({ run: { job: null, status: 'validating' } });
      const problems = await get().validate(targets);
      if (problems && problems.length) {
        if (behind) set({ banner: 'not queued: fix the marked inputs' });
        else set({ run: { job: null, status: 'invalid' } });
        return null;
      }
      if (!behind) {
        const waiting = {};
        const runs = targets ? needed(get().edges, targets) : null;
        get().nodes.forEach((node) => node.type === 'block' && !node.data.bypass && (!runs || runs.has(node.id)) &&
          (waiting[node.id] = { state: 'queued' }));
        set({ nodeStatus: waiting, run: { job: null, status: 'submitting', startedAt: performance.now() }, banner: null });
      }
      const document = { ...get().document(), ...(targets ? { targets } : {}) }; // the layout too: PNGs carry it
      get().advanceSeeds(); // ComfyUI's "control after generate": the next Run gets the next seed
      submitting += 1;
      try {
        const { job } = await api.submit(document, front ? FRONT : 0);
        if (behind) set((state) => ({ queued: [...state.queued, job] }));
        else set((state) => ({ run: { ...state.run, job, status: 'queued' } }));
        early.filter((event) => event.job === job).forEach((event) => get().handleEvent(event));
        return job;
      } catch (error) {
        if (behind) {
          set({ banner: `not queued: ${error.message}` });
        } else {
          set({ errors: error.errors && error.errors.length ? groupErrors(error.errors) : { byNode: {}, general: [error.message] } });
          finishRun(null, 'failed', { message: error.message });
        }
        return null;
      } finally {
        submitting -= 1;
        if (!submitting) early = [];
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

    /** Cancels this page's queued jobs (not the one running). */
    async clearQueue() {
      const jobs = get().queued;
      set({ queued: [] });
      const results = await Promise.allSettled(jobs.map((job) => api.cancel(job)));
      const failed = results.find((result) => result.status === 'rejected');
      if (failed) set({ banner: `could not cancel a queued job: ${failed.reason.message}` });
    },

    handleEvent(event) {
      if (typeof event.seq === 'number') set({ lastSeq: event.seq });
      if (typeof event.type === 'string' && event.type.startsWith('job.')) set((state) => ({ jobEvents: state.jobEvents + 1 }));
      const { run, queued } = get();
      if (!following(event.job) && !queued.includes(event.job)) {
        if (submitting) early.push(event);
        return;
      }
      if (following(event.job) && FINAL.has(run.status)) return;
      const handler = jobHandlers[event.type] || (following(event.job) && nodeHandlers[event.type]);
      if (handler) handler(event);
    },

    /** After the event socket (re)connects: catch up with the jobs that moved on while it was down. */
    async resync() {
      for (const job of get().queued) {
        try {
          const result = await api.job(job);
          if (result.status === 'done') jobHandlers['job.finished']({ job, ...result });
          else if (result.status === 'running' && FINAL.has(get().run.status)) follow(job);
          else if (result.status !== 'queued' && result.status !== 'running') dequeue(job);
        } catch (error) {
          if (error.status === 404) dequeue(job);
        }
      }
      const { job, status } = get().run;
      if (!job || FINAL.has(status)) return;
      try {
        const result = await api.job(job);
        if (result.status === 'done') {
          await collectOutputs(job);
          finishRun(job, 'done', { executed: result.executed || [], cached: result.cached || [] });
        } else if (result.status === 'failed' && result.error) {
          jobHandlers['job.failed']({ job, ...result.error });
        } else if (result.status === 'cancelled') finishRun(job, 'cancelled');
      } catch (error) {
        if (error.status === 404) {
          finishRun(job, 'lost');
          set({ banner: 'the server restarted; the running job was lost. Press Run to queue it again.' });
        }
      }
    },
  };
}
