// The node palette: the catalog grouped by category, searchable; drag an entry onto the canvas (or
// double-click it) to add that node.
import { useMemo, useState } from 'react';

import { shortTitle } from '../graph.js';
import { matches, nodeTypes } from '../search.js';
import { useStore } from '../store.js';

export const DRAG_TYPE = 'application/x-diffblocks-node';
// the groups open before any search (what a text-to-image graph is built from, then the image utilities a second
// pass or an outpaint needs); a search opens every match
const OPEN_AT_START = ['loaders', 'stable_diffusion/encoders', 'stable_diffusion/before_denoise',
  'stable_diffusion/denoise', 'stable_diffusion/decoders', 'output', 'image'];

export default function Palette({ onAdd }) {
  const catalog = useStore((state) => state.catalog);
  const [query, setQuery] = useState('');
  const [opened, setOpened] = useState(() => new Set(OPEN_AT_START));
  const toggle = (category, open) => setOpened((now) => {
    const next = new Set(now);
    if (open) next.add(category);
    else next.delete(category);
    return next;
  });
  const groups = useMemo(() => {
    const entries = nodeTypes(catalog);
    const byCategory = {};
    for (const [type, spec] of Object.entries(entries)) {
      if (!matches(type, spec, query)) continue;
      (byCategory[spec.category || 'other'] = byCategory[spec.category || 'other'] || []).push([type, spec]);
    }
    // the groups a text-to-image graph starts from first, in the order the data flows; the rest by name
    const rank = (category) => {
      const at = OPEN_AT_START.indexOf(category);
      return at === -1 ? OPEN_AT_START.length : at;
    };
    return Object.entries(byCategory).sort(([a], [b]) => rank(a) - rank(b) || a.localeCompare(b));
  }, [catalog, query]);

  return (
    <aside className="palette">
      <input
        type="search" className="palette-search" placeholder="Search nodes…" value={query}
        aria-label="Search nodes" onChange={(event) => setQuery(event.target.value)}
      />
      {!catalog && <div className="palette-empty">loading the catalog…</div>}
      {catalog && groups.length === 0 && <div className="palette-empty">no node matches "{query}"</div>}
      {groups.map(([category, entries]) => (
        <details
          key={category} className="palette-group" open={Boolean(query) || opened.has(category)}
          onToggle={(event) => !query && toggle(category, event.currentTarget.open)}
        >
          <summary>{category.replace(/_/g, ' ').replace(/\//g, ' › ')} <span className="count">{entries.length}</span></summary>
          {entries.sort(([a], [b]) => a.localeCompare(b)).map(([type, spec]) => (
            <div
              key={type} className="palette-item" draggable data-type={type} title={`${type}\n${spec.description}`}
              onDragStart={(event) => {
                event.dataTransfer.setData(DRAG_TYPE, type);
                event.dataTransfer.effectAllowed = 'move';
              }}
              onDoubleClick={() => onAdd(type)}
            >
              <span className="palette-title">{shortTitle(type)}</span>
              {shortTitle(type) !== type && <span className="palette-type">{type}</span>}
            </div>
          ))}
        </details>
      ))}
    </aside>
  );
}
