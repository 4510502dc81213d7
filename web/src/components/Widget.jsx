// One input's widget, drawn from its JSON schema (see schema.js widgetKind).
import { useState } from 'react';

import { api } from '../api.js';
import ModelFileWidget from './ModelFileWidget.jsx';
import { useStore } from '../store.js';
import { baseSchema, bounds, defaultOf } from '../schema.js';

// sliders only where the range is small enough to pick a value by dragging
const SLIDER_MAX_SPAN = 1000;

function NumberWidget({ name, spec, value, onChange, integer }) {
  const { min, max } = bounds(spec.schema, integer);
  const fallback = defaultOf(spec);
  const step = integer ? 1 : max !== undefined && min !== undefined && max - min <= 10 ? 0.01 : 'any';
  const slider = min !== undefined && max !== undefined && max - min <= SLIDER_MAX_SPAN;
  const parse = (text) => {
    if (text === '') return undefined;
    const number = integer ? Number.parseInt(text, 10) : Number.parseFloat(text);
    return Number.isNaN(number) ? undefined : number;
  };
  return (
    <div className="number-widget">
      {slider && (
        <input
          type="range" className="nodrag" min={min} max={max} step={integer ? 1 : (max - min) / 100}
          value={value ?? fallback ?? min} aria-label={`${name} slider`}
          onChange={(event) => onChange(parse(event.target.value))}
        />
      )}
      <input
        type="number" className="nodrag" name={name} min={min} max={max} step={step}
        value={value ?? ''} placeholder={fallback === undefined || fallback === null ? '' : String(fallback)}
        onChange={(event) => onChange(parse(event.target.value))}
      />
    </div>
  );
}

function JsonWidget({ name, value, onChange }) {
  const [text, setText] = useState(value === undefined ? '' : JSON.stringify(value));
  const [bad, setBad] = useState(false);
  const commit = () => {
    if (text.trim() === '') {
      setBad(false);
      onChange(undefined);
      return;
    }
    try {
      onChange(JSON.parse(text));
      setBad(false);
    } catch {
      setBad(true);
    }
  };
  return (
    <input
      type="text" className={`nodrag${bad ? ' bad' : ''}`} name={name} value={text} placeholder="JSON"
      title={bad ? 'not valid JSON' : ''} onChange={(event) => setText(event.target.value)} onBlur={commit}
    />
  );
}

function ImageWidget({ name, value, onChange }) {
  const setBanner = useStore((state) => state.setBanner);
  const [busy, setBusy] = useState(false);
  const sha = value && typeof value === 'object' ? value.artifact : null;
  const upload = async (event) => {
    const file = event.target.files && event.target.files[0];
    if (!file) return;
    setBusy(true);
    try {
      const { artifact } = await api.upload(file);
      onChange({ artifact });
    } catch (error) {
      setBanner(`upload failed: ${error.message}`);
    } finally {
      setBusy(false);
    }
  };
  return (
    <div className="image-widget">
      {sha && <img src={api.artifactUrl(sha)} alt={`${name} upload`} />}
      <label className="button small nodrag">
        {busy ? 'uploading…' : sha ? 'replace image' : 'upload image'}
        <input type="file" accept="image/*" name={name} onChange={upload} hidden />
      </label>
    </div>
  );
}

/** The widget for input `name` of kind `kind`; `onChange(undefined)` unsets the input. */
export default function Widget({ name, kind, spec, value, onChange }) {
  const base = baseSchema(spec.schema).schema;
  const fallback = defaultOf(spec);
  switch (kind) {
    case 'integer':
    case 'number':
      return <NumberWidget name={name} spec={spec} value={value} onChange={onChange} integer={kind === 'integer'} />;
    case 'boolean':
      return (
        <input
          type="checkbox" className="nodrag" name={name} checked={Boolean(value ?? fallback)}
          onChange={(event) => onChange(event.target.checked)}
        />
      );
    case 'enum': {
      const choices = base.enum;
      const index = value === undefined ? '' : String(choices.indexOf(value));
      return (
        <select
          className="nodrag" name={name} value={index}
          onChange={(event) => onChange(event.target.value === '' ? undefined : choices[Number(event.target.value)])}
        >
          <option value="">{fallback === undefined || fallback === null ? '—' : `default (${fallback})`}</option>
          {choices.map((choice, i) => <option key={String(choice)} value={String(i)}>{String(choice)}</option>)}
        </select>
      );
    }
    case 'text':
      return (
        <textarea
          className="nodrag nowheel" name={name} rows={2} value={value ?? ''} placeholder={fallback ?? ''}
          onChange={(event) => onChange(event.target.value === '' ? undefined : event.target.value)}
        />
      );
    case 'string':
      if (typeof base['x-model-folder'] === 'string') {
        const folder = base['x-model-folder'];
        return <ModelFileWidget name={name} folder={folder} value={value} fallback={fallback} onChange={onChange} />;
      }
      return (
        <input
          type="text" className="nodrag" name={name} value={value ?? ''} placeholder={fallback ?? ''}
          onChange={(event) => onChange(event.target.value === '' ? undefined : event.target.value)}
        />
      );
    case 'json':
      // keyed by the value so a loaded workflow replaces the text being edited
      return <JsonWidget key={JSON.stringify(value) ?? ''} name={name} value={value} onChange={onChange} />;
    case 'image':
      return <ImageWidget name={name} value={value} onChange={onChange} />;
    default:
      return null;
  }
}
