// The right-hand panel: the session's images, newest first, and the server's job history.
import { useState } from 'react';

import { api } from '../api.js';
import { useStore } from '../store.js';
import History from './History.jsx';

function Images() {
  const gallery = useStore((state) => state.gallery);
  if (gallery.length === 0) return <div className="palette-empty">images from this session appear here</div>;
  return [...gallery].reverse().map((item) => (
    <a key={item.sha} href={api.artifactUrl(item.sha)} target="_blank" rel="noreferrer" className="gallery-item">
      <img src={api.artifactUrl(item.sha)} alt={`image from job ${item.job}`} data-artifact={item.sha} />
    </a>
  ));
}

export default function Gallery() {
  const count = useStore((state) => state.gallery.length);
  const [tab, setTab] = useState('images');
  const tabButton = (name, label) => (
    <button type="button" role="tab" aria-selected={tab === name} className={`tab${tab === name ? ' active' : ''}`}
      onClick={() => setTab(name)}>{label}</button>
  );
  return (
    <aside className="gallery" aria-label="Gallery">
      <div className="tabs" role="tablist">
        {tabButton('images', <>Gallery <span className="count">{count}</span></>)}
        {tabButton('history', 'History')}
      </div>
      {tab === 'images' ? <Images /> : <History />}
    </aside>
  );
}
