// The canvas's search box, as in ComfyUI: double-click the empty canvas, or leave a wire there, type, and Enter
// (or a click) adds the node at that spot, wired to the socket the wire came from. Escape or a click away closes it.
import { useMemo, useState } from 'react';

import { shortTitle } from '../graph.js';
import { findNodes } from '../search.js';
import { useStore } from '../store.js';

// the box's size, to open it up or left of the point where it would leave the canvas
const WIDTH = 290;
const HEIGHT = 400;

/** `at`: {x, y} inside the canvas (pixels), where the box opens; `room`: the canvas's {width, height};
 * `from`: the wire left there, or null. */
export default function NodeSearch({ at, room, from, onPick, onClose }) {
  const catalog = useStore((state) => state.catalog);
  const [query, setQuery] = useState('');
  const [chosen, setChosen] = useState(0);
  const found = useMemo(() => findNodes(catalog, query, from), [catalog, query, from]);
  const pick = (index) => found[index] && onPick(found[index][0]);

  const onKeyDown = (event) => {
    if (event.key === 'Escape') onClose();
    else if (event.key === 'Enter') pick(chosen);
    else if (event.key === 'ArrowDown') setChosen(Math.min(chosen + 1, found.length - 1));
    else if (event.key === 'ArrowUp') setChosen(Math.max(chosen - 1, 0));
    else return;
    event.preventDefault();
  };

  return (
    <div
      className="node-search" data-testid="node-search"
      style={{
        ...(at.x + WIDTH > room.width ? { right: room.width - at.x } : { left: at.x }),
        ...(at.y + HEIGHT > room.height ? { bottom: room.height - at.y } : { top: at.y }),
      }}
    >
      <input
        autoFocus type="search" placeholder="Add a node…" aria-label="Add a node" value={query}
        onChange={(event) => {
          setQuery(event.target.value);
          setChosen(0);
        }}
        onKeyDown={onKeyDown} onBlur={onClose}
      />
      {from && (
        <div className="node-search-hint">
          {from.kind === 'source' ? `takes ${from.socket}` : `gives ${from.input.socket || 'a value'} for ${from.handle}`}
        </div>
      )}
      <ul role="listbox">
        {found.map(([type, spec], index) => (
          <li
            key={type} role="option" aria-selected={index === chosen} data-type={type} title={spec.description}
            className={index === chosen ? 'chosen' : ''}
            onMouseDown={(event) => event.preventDefault()} // keep the focus in the box until the click lands
            onMouseEnter={() => setChosen(index)} onClick={() => pick(index)}
          >
            <span className="palette-title">{shortTitle(type)}</span>
            <span className="palette-type">{spec.category}</span>
          </li>
        ))}
        {!found.length && <li className="empty">no node {from ? 'takes this wire and ' : ''}matches "{query}"</li>}
      </ul>
    </div>
  );
}
