// A gallery image shown large over the page: ← and → step through the session's images, Escape closes.
import { useEffect } from 'react';

import { api } from '../api.js';

/** `items`: the gallery's [{sha, job}] as shown (newest first); `index`: the one open; `onIndex(i | null)`. */
export default function Viewer({ items, index, onIndex }) {
  const item = items[index];
  useEffect(() => {
    const onKey = (event) => {
      if (event.key === 'Escape') onIndex(null);
      else if (event.key === 'ArrowLeft') onIndex(Math.max(0, index - 1));
      else if (event.key === 'ArrowRight') onIndex(Math.min(items.length - 1, index + 1));
      else return;
      event.preventDefault();
      event.stopPropagation();
    };
    window.addEventListener('keydown', onKey, true); // before the canvas's keys
    return () => window.removeEventListener('keydown', onKey, true);
  }, [index, items.length, onIndex]);
  if (!item) return null;
  return (
    <div className="viewer" role="dialog" aria-label="image viewer" onClick={() => onIndex(null)}>
      <figure onClick={(event) => event.stopPropagation()}>
        <img src={api.artifactUrl(item.sha)} alt={`image from job ${item.job}`} data-artifact={item.sha} />
        <figcaption>
          <span>{index + 1} / {items.length} · job {item.job}</span>
          <a href={api.artifactUrl(item.sha)} target="_blank" rel="noreferrer">open</a>
          <button type="button" className="button small" onClick={() => onIndex(null)}>close</button>
        </figcaption>
      </figure>
    </div>
  );
}
