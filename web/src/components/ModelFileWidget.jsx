// A string input naming a model ("x-model-folder": its kind), as ComfyUI's model combo: ▾ shows every file of that
// folder whatever the input holds, typing narrows the list to the names that contain the text, a click, or the
// arrows and Enter, picks one; any path or Hub id can still be typed. A plain text input where the server lists no
// model files.
import { useState } from 'react';

import { refreshModelFiles, useModelFiles } from '../modelFiles.js';

export default function ModelFileWidget({ name, folder, value, fallback, onChange }) {
  const names = useModelFiles(folder);
  const [filter, setFilter] = useState(null); // null: the menu is closed; '' shows every name
  const [chosen, setChosen] = useState(0);
  const hint = names !== null && names.length === 0 ? `nothing in models/${folder}: type a path` : '';
  // the hint as placeholder only where an empty input means nothing (no default to show there instead)
  const placeholder = fallback === undefined || fallback === null ? hint : String(fallback);
  const needle = (filter || '').toLowerCase();
  const shown = filter === null || !names ? [] : names.filter((file) => file.toLowerCase().includes(needle));

  const openAll = () => {
    refreshModelFiles();
    setFilter('');
    setChosen(Math.max(0, (names || []).indexOf(value)));
  };
  const pick = (file) => {
    onChange(file);
    setFilter(null);
  };
  const onKeyDown = (event) => {
    if (event.key === 'ArrowDown' && filter === null) openAll();
    else if (event.key === 'ArrowDown') setChosen(Math.min(chosen + 1, shown.length - 1));
    else if (event.key === 'ArrowUp') setChosen(Math.max(chosen - 1, 0));
    else if (event.key === 'Enter' && shown[chosen] !== undefined) pick(shown[chosen]);
    else if (event.key === 'Escape') setFilter(null);
    else return;
    event.preventDefault();
    event.stopPropagation(); // the canvas's own keys (Delete, undo) stay out of the field
  };

  return (
    <div className="model-file-widget">
      <input
        type="text" className="nodrag" name={name} value={value ?? ''} placeholder={placeholder} title={hint}
        data-model-folder={folder} role="combobox" aria-expanded={shown.length > 0} autoComplete="off"
        onFocus={refreshModelFiles} onBlur={() => setFilter(null)} onKeyDown={onKeyDown}
        onChange={(event) => {
          const text = event.target.value;
          onChange(text === '' ? undefined : text);
          setFilter(text);
          setChosen(0);
        }}
      />
      {names && names.length > 0 && (
        <button
          type="button" className="nodrag model-file-toggle" aria-label={`${name}: the files in models/${folder}`}
          tabIndex={-1} onMouseDown={(event) => event.preventDefault() /* the input keeps the focus */}
          onClick={() => (filter === '' ? setFilter(null) : openAll()) /* every name shown: close; else show them all */}
        >
          ▾
        </button>
      )}
      {shown.length > 0 && (
        <ul role="listbox" className="nodrag nowheel model-file-menu" aria-label={`models/${folder}`}>
          {shown.map((file, index) => (
            <li
              key={file} role="option" aria-selected={file === value} className={index === chosen ? 'chosen' : ''}
              onMouseDown={(event) => event.preventDefault()} onClick={() => pick(file)}
            >
              {file}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
