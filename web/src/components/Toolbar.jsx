// Run, Run selected, Cancel, Undo, Redo, Save, Load, Templates, and what the server and the jobs are doing.
import { useRef, useState } from 'react';
import { useShallow } from 'zustand/react/shallow';

import { DEFAULT_WORKFLOW, selectedTargets } from '../graph.js';
import { readWorkflowFile } from '../pngInfo.js';
import { TEMPLATES } from '../templates.js';
import { canRun, isActive, modelRepo, useStore } from '../store.js';

function RunStatus({ run }) {
  const text = {
    idle: '',
    invalid: 'fix the marked inputs to run',
    validating: 'checking…',
    submitting: 'queuing…',
    queued: 'queued',
    running: 'running…',
    done: run.seconds ? `done in ${run.seconds.toFixed(2)} s` : 'done',
    failed: `failed: ${run.message || ''}`,
    cancelled: 'cancelled',
    lost: 'lost (server restarted)',
  }[run.status];
  return <span className={`run-status run-${run.status}`} data-testid="run-status" data-status={run.status} data-job={run.job || ''} title={text}>{text}</span>;
}

function download(name, document) {
  const blob = new Blob([JSON.stringify(document, null, 2)], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const link = window.document.createElement('a');
  link.href = url;
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** ComfyUI's batch count: the jobs one Run queues, each with the next seeds. The text may be empty while typing. */
function BatchCount() {
  const count = useStore((state) => state.batchCount);
  const [text, setText] = useState(String(count));
  return (
    <label className="batch-count" title="jobs one Run queues, each with the next seeds (ComfyUI's batch count)">
      ×
      <input
        type="number" min={1} max={100} value={text} aria-label="batch count"
        onChange={(event) => {
          setText(event.target.value);
          if (/^\d+$/.test(event.target.value) && Number(event.target.value) >= 1) {
            useStore.getState().setBatchCount(event.target.value);
          }
        }}
        onBlur={() => setText(String(useStore.getState().batchCount))}
      />
    </label>
  );
}

function Queue() {
  const queued = useStore((state) => state.queued);
  const clearQueue = useStore((state) => state.clearQueue);
  if (!queued.length) return null;
  return (
    <span className="queue" data-testid="queue" data-count={queued.length}>
      +{queued.length} queued
      <button type="button" className="button small" onClick={clearQueue} title="cancel the jobs waiting behind this one">
        clear
      </button>
    </span>
  );
}

export default function Toolbar() {
  const run = useStore((state) => state.run);
  const connection = useStore((state) => state.connection);
  const runnable = useStore(canRun);
  const undoable = useStore((state) => state.undoable);
  const targets = useStore(useShallow((state) => selectedTargets(state.nodes, state.edges)));
  const { runBatch, cancel, undo, redo, loadDocument, setBanner } = useStore.getState();
  const fileInput = useRef(null);
  const active = isActive(run);

  const open = async (event) => {
    const file = event.target.files && event.target.files[0];
    event.target.value = '';
    if (!file) return;
    try {
      const { document, notice } = await readWorkflowFile(file, modelRepo());
      loadDocument(document);
      useStore.getState().setNotice(notice);
    } catch (error) {
      setBanner(`could not load ${file.name}: ${error.message}`);
    }
  };

  return (
    <header className="toolbar">
      <span className="brand">diffblocks</span>
      <button
        type="button" className="button primary" onClick={(event) => runBatch({ front: event.shiftKey })} disabled={!runnable}
        title="Run (Ctrl+Enter); while a job runs, queues another (Shift+click or Ctrl+Shift+Enter: ahead of every job waiting)"
      >
        Run
      </button>
      <BatchCount />
      <button
        type="button" className="button" onClick={() => runBatch({ targets })} disabled={!runnable || !targets.length}
        title="run only what the selected nodes need (ComfyUI's queue selected output nodes); the rest of the graph may be unfinished"
      >
        Run selected
      </button>
      <button type="button" className="button" onClick={cancel} disabled={!active || !run.job}>Cancel</button>
      <span className="separator" />
      <button type="button" className="button" onClick={undo} disabled={!undoable.undo} title="Undo (Ctrl+Z)">Undo</button>
      <button type="button" className="button" onClick={redo} disabled={!undoable.redo} title="Redo (Ctrl+Shift+Z, Ctrl+Y)">
        Redo
      </button>
      <span className="separator" />
      <button type="button" className="button" onClick={() => download('workflow.json', useStore.getState().document())}>
        Save
      </button>
      <button type="button" className="button" onClick={() => fileInput.current.click()}>Load</button>
      <input ref={fileInput} type="file" accept="application/json,.json,image/png,.png" hidden onChange={open} data-testid="load-input" />
      <button type="button" className="button" onClick={() => loadDocument(DEFAULT_WORKFLOW)}>Reset</button>
      <select
        className="button" aria-label="Templates" value="" title="load a ready-made workflow (undo brings yours back)"
        onChange={(event) => {
          if (event.target.value !== '') loadDocument(TEMPLATES[Number(event.target.value)].document);
          event.target.blur(); // the keys go back to the canvas (Ctrl+Z undoes the choice)
        }}
      >
        <option value="">Templates…</option>
        {TEMPLATES.map((template, index) => <option key={template.title} value={index}>{template.title}</option>)}
      </select>
      <RunStatus run={run} />
      <Queue />
      <span className={`connection connection-${connection}`} data-testid="connection">
        {connection === 'connected' ? 'connected' : connection === 'connecting' ? 'connecting…' : 'reconnecting…'}
      </span>
    </header>
  );
}
