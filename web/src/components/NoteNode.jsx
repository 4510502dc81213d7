// The page-only note: text on the canvas for whoever opens the workflow next; saved with it, never run.
import { memo } from 'react';

import { useStore } from '../store.js';

function NoteNode({ id, data, selected }) {
  const setValue = useStore((state) => state.setValue);
  return (
    <div className={`block-node note-node${selected ? ' selected' : ''}`} data-node-id={id}>
      <div className="node-header">
        <span className="node-title">Note</span>
        <span className="node-id">{id}</span>
      </div>
      <textarea
        className="nodrag nowheel" rows={4} value={data.values.text || ''} placeholder="a note for this workflow"
        aria-label={`${id} text`} onChange={(event) => setValue(id, 'text', event.target.value)}
      />
    </div>
  );
}

export default memo(NoteNode);
