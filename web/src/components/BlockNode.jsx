// A catalog node on the canvas (React Flow custom node): outputs and inputs as handles, a widget per input,
// its run state from the server's events, and its images.
import { Handle, Position } from '@xyflow/react';
import { memo, useMemo, useState } from 'react';

import { api } from '../api.js';
import { CONTROLS, hasControl } from '../controls.js';
import { shortTitle } from '../graph.js';
import { widgetKind } from '../schema.js';
import { artifactsIn, useStore } from '../store.js';
import Widget from './Widget.jsx';

const IDLE = { state: 'idle' };
const MAX_OUTPUTS_SHOWN = 5;

function socketColor(socket) {
  if (!socket) return '#9aa4b2';
  let hash = 0;
  for (const char of socket) hash = (hash * 31 + char.charCodeAt(0)) % 360;
  return `hsl(${hash}, 60%, 48%)`;
}

export function StatusBadge({ status }) {
  const { state } = status;
  if (state === 'idle') return null;
  let text = state;
  if (state === 'running' && status.total) text = `running ${status.step}/${status.total}`;
  if (state === 'done' && typeof status.seconds === 'number') text = `done ${status.seconds.toFixed(2)} s`;
  return <span className={`badge badge-${state}`} data-testid="node-state">{text}</span>;
}

function ProgressBar({ status }) {
  if (status.state !== 'running') return null;
  const fraction = status.total ? status.step / status.total : 0;
  return (
    <div className="progress" role="progressbar" aria-valuenow={status.step || 0} aria-valuemax={status.total || 0}>
      <div className="progress-fill" style={{ width: `${Math.round(fraction * 100)}%` }} />
    </div>
  );
}

function Messages({ messages, className }) {
  if (!messages || !messages.length) return null;
  return messages.map((message) => <div key={message} className={className}>{message}</div>);
}

function ControlSelect({ id, name, mode }) {
  const setControl = useStore((state) => state.setControl);
  return (
    <label className="control nodrag" title="what the value does after each Run">
      after run
      <select
        className="nodrag" value={mode} aria-label={`${name} after each run`} data-testid="control"
        onChange={(event) => setControl(id, name, event.target.value)}
      >
        {CONTROLS.map((choice) => <option key={choice} value={choice}>{choice}</option>)}
      </select>
    </label>
  );
}

function InputRow({ id, name, spec, nodeType, value, link, errors, control }) {
  const setValue = useStore((state) => state.setValue);
  const kind = widgetKind(name, spec, nodeType);
  return (
    <div className={`io-row input-row${errors ? ' has-error' : ''}`} data-input={name}>
      <div className="io-label">
        <Handle
          type="target" position={Position.Left} id={name}
          className={spec.socket ? 'socket' : 'socket socket-widget'}
          style={{ '--socket-color': socketColor(spec.socket || 'json') }}
          title={spec.socket ? `${name}: ${spec.socket}` : `${name}: takes a ${kind || 'JSON'} value or wire`}
        />
        <span className="io-name">{name}{spec.required ? <span className="required">*</span> : null}</span>
        {link && <span className="io-link">← {link.source}.{link.sourceHandle}</span>}
        {!link && spec.socket && !kind && <span className="io-socket">{spec.socket}</span>}
      </div>
      {!link && kind && (
        <div className="io-widget">
          <Widget name={name} kind={kind} spec={spec} value={value} onChange={(next) => setValue(id, name, next)} />
          {hasControl(name, kind) && <ControlSelect id={id} name={name} mode={control || 'fixed'} />}
        </div>
      )}
      <Messages messages={errors} className="input-error" />
    </div>
  );
}

function OutputRow({ name, socket }) {
  return (
    <div className="io-row output-row" data-output={name}>
      <span className="io-socket">{socket}</span>
      <span className="io-name">{name}</span>
      <Handle
        type="source" position={Position.Right} id={name} className="socket"
        style={{ '--socket-color': socketColor(socket) }} title={`${name}: ${socket}`}
      />
    </div>
  );
}

/** Inputs worth a row at once: required, wired, set, with a problem, or with a simple widget; the rest fold away. */
function isShown(name, spec, nodeType, value, link, errors) {
  if (spec.required || link || value !== undefined || errors) return true;
  const kind = widgetKind(name, spec, nodeType);
  return Boolean(kind) && kind !== 'json';
}

function Images({ shas, label }) {
  if (!shas.length) return null;
  return (
    <div className="node-images">
      {shas.map((sha) => (
        <a key={sha} href={api.artifactUrl(sha)} target="_blank" rel="noreferrer">
          <img src={api.artifactUrl(sha)} alt={label} className="node-image" />
        </a>
      ))}
    </div>
  );
}

function usePreviewIds() {
  const nodes = useStore((state) => state.nodes);
  const key = nodes.filter((node) => node.type === 'preview').map((node) => node.id).join('\n');
  return useMemo(() => new Set(key ? key.split('\n') : []), [key]);
}

/** The node type an error's message says to use instead ("... use preset:sdxl-text2image", for a preset given
 * another family's models), when the catalog has it; else null. */
function suggestedType(messages) {
  const { catalog } = useStore.getState();
  for (const message of messages) {
    const found = typeof message === 'string' && /\buse (preset:[\w.-]+)/.exec(message);
    if (found && catalog && catalog[found[1]]) return found[1];
  }
  return null;
}

function BlockNode({ id, data, selected }) {
  const spec = useStore((state) => state.catalog && state.catalog[data.nodeType]);
  const status = useStore((state) => state.nodeStatus[id]) || IDLE;
  const errors = useStore((state) => state.errors.byNode[id]);
  const outputs = useStore((state) => state.outputs[id]);
  const edges = useStore((state) => state.edges);
  const previewIds = usePreviewIds();
  const [expanded, setExpanded] = useState(false);
  const links = useMemo(
    () => Object.fromEntries(edges.filter((edge) => edge.target === id).map((edge) => [edge.targetHandle, edge])),
    [edges, id],
  );

  if (!spec) {
    return (
      <div className={`block-node unknown${selected ? ' selected' : ''}`} data-node-id={id}>
        <div className="node-header"><span className="node-title">{id}</span></div>
        <div className="node-error">unknown node type "{data.nodeType}"</div>
      </div>
    );
  }
  const header = (
    <div className="node-header" title={spec.description}>
      <button
        type="button" className="fold nodrag" aria-label={data.collapsed ? 'unfold' : 'fold'}
        title={data.collapsed ? 'unfold (Alt+C)' : 'fold to the title bar (Alt+C)'}
        onClick={() => useStore.getState().toggleCollapse([id])}
      >
        {data.collapsed ? '▸' : '▾'}
      </button>
      <span className="node-title">{shortTitle(data.nodeType)}</span>
      <span className="node-id">{id}</span>
      {data.bypass && <span className="badge badge-bypassed" title="does not run; its inputs flow past it (Ctrl+B)">bypassed</span>}
      <StatusBadge status={status} />
    </div>
  );
  const classes = `block-node state-${status.state}${errors ? ' has-error' : ''}${selected ? ' selected' : ''}${data.bypass ? ' bypassed' : ''}`;
  if (data.collapsed) {
    // the title bar only; the wires still end on it, at its sides
    const wiredOutputs = [...new Set(edges.filter((edge) => edge.source === id).map((edge) => edge.sourceHandle))];
    return (
      <div className={`${classes} collapsed`} data-node-id={id} data-state={status.state}>
        {header}
        <ProgressBar status={status} />
        {/* every problem in one list, each naming its input, since no input row shows it */}
        <Messages
          className="node-error"
          messages={[
            ...Object.entries(errors || {}).flatMap(([key, list]) => list.map((message) => (key ? `${key}: ${message}` : message))),
            ...(status.state === 'failed' && status.message && !errors ? [status.message] : []),
          ]}
        />
        {Object.keys(links).map((name) => (
          <Handle key={`in-${name}`} type="target" position={Position.Left} id={name} className="socket folded-socket" />
        ))}
        {wiredOutputs.map((name) => (
          <Handle key={`out-${name}`} type="source" position={Position.Right} id={name} className="socket folded-socket" />
        ))}
      </div>
    );
  }
  const inputs = Object.entries(spec.inputs);
  const shown = inputs.filter(([name, input]) => expanded || isShown(name, input, data.nodeType, data.values[name], links[name], errors && errors[name]));
  // a loader has an output per component: the unwired ones fold away with the optional inputs
  const outputEntries = Object.entries(spec.outputs);
  const shownOutputs = outputEntries.filter(([name]) => expanded || outputEntries.length <= MAX_OUTPUTS_SHOWN ||
    name === 'components' || edges.some((edge) => edge.source === id && edge.sourceHandle === name));
  const hidden = inputs.length - shown.length + outputEntries.length - shownOutputs.length;
  // images of outputs wired to an Output node are shown there, not twice
  const isOwnImage = (name) => !edges.some((edge) => edge.source === id && edge.sourceHandle === name && previewIds.has(edge.target));
  const shas = Object.entries(outputs || {}).filter(([name]) => isOwnImage(name)).flatMap(([, value]) => artifactsIn(value));
  const nodeErrors = errors && errors[''];
  const inputErrors = errors ? Object.keys(errors).filter((key) => key && !spec.inputs[key]) : [];
  const switchTo = suggestedType([...Object.values(errors || {}).flat(), status.message]);

  return (
    <div className={classes} data-node-id={id} data-state={status.state}>
      {header}
      <ProgressBar status={status} />
      {switchTo && (
        <button
          type="button" className="button small switch-type nodrag" data-testid="switch-type"
          title={`make this node a ${switchTo} node, keeping the values and wires both take`}
          onClick={() => useStore.getState().changeType(id, switchTo)}
        >
          use {switchTo}
        </button>
      )}
      <Messages messages={nodeErrors} className="node-error" />
      {inputErrors.map((key) => <Messages key={key} messages={errors[key].map((m) => `${key}: ${m}`)} className="node-error" />)}
      {status.state === 'failed' && status.message && !nodeErrors && !(errors && errors[status.input]) && (
        <div className="node-error">{status.message}</div>
      )}
      <div className="node-body">
        {shownOutputs.map(([name, output]) => <OutputRow key={name} name={name} socket={output.socket} />)}
        {shown.map(([name, input]) => (
          <InputRow
            key={name} id={id} name={name} spec={input} nodeType={data.nodeType} value={data.values[name]}
            link={links[name]} errors={errors && errors[name]} control={data.control && data.control[name]}
          />
        ))}
        {(hidden > 0 || expanded) && (
          <button type="button" className="more nodrag" onClick={() => setExpanded(!expanded)}>
            {expanded ? 'fewer inputs' : `+ ${hidden} more socket${hidden === 1 ? '' : 's'}`}
          </button>
        )}
      </div>
      {status.preview && (
        <img className="node-preview" src={status.preview} alt={`${id} preview`} />
      )}
      <Images shas={shas} label={`${id} output`} />
    </div>
  );
}

export default memo(BlockNode);
