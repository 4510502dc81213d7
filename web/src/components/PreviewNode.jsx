// The page-only output node: shows the images of the output it is wired to, after each run.
import { Handle, Position } from '@xyflow/react';
import { memo, useMemo } from 'react';

import { api } from '../api.js';
import { artifactsIn, isActive, useStore } from '../store.js';

function PreviewNode({ id, selected }) {
  const edges = useStore((state) => state.edges);
  const outputs = useStore((state) => state.outputs);
  const running = useStore((state) => isActive(state.run));
  const source = useMemo(() => edges.find((edge) => edge.target === id), [edges, id]);
  const shas = source ? artifactsIn((outputs[source.source] || {})[source.sourceHandle]) : [];

  return (
    <div className={`block-node preview-node${selected ? ' selected' : ''}`} data-node-id={id}>
      <div className="node-header">
        <span className="node-title">Preview Image</span>
        <span className="node-id">{id}</span>
      </div>
      <div className="io-row input-row" data-input="images">
        <div className="io-label">
          <Handle type="target" position={Position.Left} id="images" className="socket" title="images: image" />
          <span className="io-name">images</span>
          {source && <span className="io-link">← {source.source}.{source.sourceHandle}</span>}
        </div>
      </div>
      <div className="preview-frame" data-testid="output-images">
        {shas.length ? (
          shas.map((sha) => <img key={sha} src={api.artifactUrl(sha)} alt="output" className="output-image" data-artifact={sha} />)
        ) : (
          <span className="placeholder">{running ? 'running…' : source ? 'press Run' : 'wire an image output here'}</span>
        )}
      </div>
    </div>
  );
}

export default memo(PreviewNode);
