// What the page keeps in the browser's localStorage: the graph being edited (so a reload or a closed tab loses
// nothing, as in ComfyUI) and the copied nodes (so they paste into another tab too).

const WORKFLOW_KEY = 'diffblocks.workflow';
const CLIPBOARD_KEY = 'diffblocks.clipboard';
const SAVE_DELAY_MS = 300;

function read(key) {
  try {
    const text = window.localStorage.getItem(key);
    return text ? JSON.parse(text) : null;
  } catch {
    return null; // storage turned off, or not JSON: as if nothing was kept
  }
}

function write(key, value) {
  try {
    window.localStorage.setItem(key, JSON.stringify(value));
    return true;
  } catch {
    return false; // storage full or turned off: the page works on without it
  }
}

export const savedWorkflow = () => read(WORKFLOW_KEY);
export const savedClipboard = () => read(CLIPBOARD_KEY);
export const keepClipboard = (clip) => write(CLIPBOARD_KEY, clip);

/** Keeps `current()` (the saved document) in storage a moment after each change, and at once when the page
 * is hidden or closed. Returns the function to call on every change. */
export function autosave(current) {
  let timer = null;
  let pending = false;
  const flush = () => {
    clearTimeout(timer);
    if (!pending) return;
    pending = false;
    write(WORKFLOW_KEY, current());
  };
  window.addEventListener('pagehide', flush);
  window.document.addEventListener('visibilitychange', () => window.document.visibilityState === 'hidden' && flush());
  return () => {
    pending = true;
    clearTimeout(timer);
    timer = setTimeout(flush, SAVE_DELAY_MS);
  };
}
