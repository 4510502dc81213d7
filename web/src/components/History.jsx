// The server's jobs, newest first, from every client (ComfyUI's queue and history): each with its state and
// time; a click loads the workflow it ran (one undo step), × cancels one still queued or running.
import { useEffect, useRef, useState } from 'react';

import { api } from '../api.js';
import { useStore } from '../store.js';

const REFRESH_EVERY_MS = 300; // job events come in bursts, and on a busy server without pause: at most this often
const SHOWN = 50;

function when(job) {
  const { created, seconds } = job.timings;
  const at = new Date(created * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  return typeof seconds === 'number' ? `${at} · ${seconds.toFixed(2)} s` : at;
}

export default function History() {
  const jobEvents = useStore((state) => state.jobEvents);
  const connection = useStore((state) => state.connection);
  const [jobs, setJobs] = useState(null);
  const timer = useRef(null); // a refresh is due: later events join it rather than put it off
  const shown = useRef(true);
  const loaded = useRef(false);

  useEffect(() => {
    shown.current = true;
    return () => {
      shown.current = false;
      clearTimeout(timer.current);
      timer.current = null;
    };
  }, []);
  useEffect(() => {
    if (connection !== 'connected' || timer.current) return;
    timer.current = setTimeout(() => {
      timer.current = null;
      api.jobs(SHOWN).then((answer) => {
        loaded.current = true;
        if (shown.current) setJobs(answer.jobs);
      }).catch((error) => shown.current && useStore.getState().setBanner(`could not list the jobs: ${error.message}`));
    }, loaded.current ? REFRESH_EVERY_MS : 0);
  }, [jobEvents, connection]);

  const load = async (id) => {
    const { loadDocument, setBanner } = useStore.getState();
    try {
      loadDocument((await api.job(id)).workflow);
    } catch (error) {
      setBanner(`could not load job ${id}: ${error.message}`);
    }
  };
  const cancel = (id) => api.cancel(id).catch((error) => useStore.getState().setBanner(`could not cancel: ${error.message}`));

  if (jobs === null) return <div className="palette-empty">loading…</div>;
  if (!jobs.length) return <div className="palette-empty">no jobs yet</div>;
  return (
    <ol className="history" data-testid="history">
      {jobs.map((job) => (
        <li key={job.job} className="history-item" data-job={job.job} data-status={job.status}>
          <button
            type="button" className="history-load" onClick={() => load(job.job)}
            title={job.error ? `${job.error.message}\nclick to load this workflow` : 'click to load this workflow'}
          >
            <span className={`badge badge-${job.status}`}>{job.status}</span>
            <span className="history-when">{when(job)}</span>
            <span className="history-id">{job.job}</span>
          </button>
          {(job.status === 'queued' || job.status === 'running') && (
            <button type="button" className="button small" aria-label={`cancel ${job.job}`} onClick={() => cancel(job.job)}>×</button>
          )}
        </li>
      ))}
    </ol>
  );
}
