// The editor's keyboard shortcuts, as in ComfyUI: Ctrl+Enter runs (Ctrl+Shift+Enter ahead of every job waiting),
// Ctrl+Z / Ctrl+Shift+Z / Ctrl+Y undo and redo, Ctrl+C / Ctrl+V copy and paste nodes, Ctrl+Shift+V pastes them
// with their input wires, Ctrl+A selects every node, Ctrl+B bypasses the selected nodes (or stops), Ctrl+G groups
// them. Cmd works
// for Ctrl; Alt+C folds the selected nodes to their title bars (or unfolds them). Delete and Backspace remove the
// selection (React Flow's deleteKeyCode).
import { useEffect } from 'react';

import { isImageFile } from './pngInfo.js';
import { canRun, useStore } from './store.js';

// typing in a widget keeps the browser's own undo, copy and paste
const isTyping = (target) => Boolean(target) &&
  (target.isContentEditable || ['INPUT', 'TEXTAREA', 'SELECT'].includes(target.tagName));
const hasTextSelection = () => String(window.getSelection() || '') !== '';

/** Listens for the shortcuts while the editor is shown; `pastePoint()` gives where a paste goes (flow
 * coordinates under the pointer, or null), `centerPoint()` the middle of the canvas. */
export function useShortcuts(pastePoint, centerPoint) {
  useEffect(() => {
    const onKeyDown = (event) => {
      if (event.altKey && !event.ctrlKey && !event.metaKey && event.code === 'KeyC' && !isTyping(event.target)) {
        event.preventDefault();
        useStore.getState().toggleCollapse();
        return;
      }
      if (!(event.ctrlKey || event.metaKey) || event.altKey) return;
      const key = event.key.toLowerCase();
      const store = useStore.getState();
      let action = null;
      if (key === 'enter') action = () => canRun(store) && store.runBatch({ front: event.shiftKey }); // from a prompt box too
      else if (isTyping(event.target)) return;
      else if (key === 'z') action = event.shiftKey ? store.redo : store.undo;
      else if (key === 'y') action = store.redo;
      else if (key === 'c' && !hasTextSelection()) action = store.copy;
      else if (key === 'v' && event.shiftKey) action = () => store.paste(pastePoint(), true);
      // a plain Ctrl+V is left to the browser: its paste event may carry an image (onPaste)
      else if (key === 'b') action = store.toggleBypass;
      else if (key === 'a') action = store.selectAll;
      else if (key === 'g') action = store.groupSelected;
      if (!action) return;
      event.preventDefault();
      action();
    };
    // Ctrl+V: an image on the system clipboard becomes a Load Image node, else the copied nodes are pasted
    const onPaste = (event) => {
      if (isTyping(event.target)) return;
      const store = useStore.getState();
      const image = [...((event.clipboardData && event.clipboardData.files) || [])].find(isImageFile);
      event.preventDefault();
      if (image) store.addImage(image, pastePoint() || centerPoint());
      else store.paste(pastePoint(), false);
    };
    window.addEventListener('keydown', onKeyDown);
    window.addEventListener('paste', onPaste);
    return () => {
      window.removeEventListener('keydown', onKeyDown);
      window.removeEventListener('paste', onPaste);
    };
  }, [pastePoint, centerPoint]);
}
