// The page-only group: a titled box behind the nodes; drag it by its title to move the nodes inside, resize it
// from its edges once selected, rename it in place.
import { NodeResizer } from '@xyflow/react';
import { memo } from 'react';

import { useStore } from '../store.js';

function GroupNode({ id, data, selected }) {
  const setValue = useStore((state) => state.setValue);
  return (
    <div className={`group-box${selected ? ' selected' : ''}`} data-node-id={id}>
      <NodeResizer isVisible={selected} minWidth={160} minHeight={80} onResizeStart={() => useStore.getState().rememberGraph()} />
      <div className="group-title">
        <input
          className="nodrag" value={data.values.title || ''} aria-label={`${id} title`} placeholder="Group"
          onChange={(event) => setValue(id, 'title', event.target.value)}
        />
      </div>
    </div>
  );
}

export default memo(GroupNode);
