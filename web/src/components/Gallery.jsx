// The right-hand panel: the session's images, newest first (a click shows one large), and the server's job history.
import { useMemo, useState } from 'react';

import { api } from '../api.js';
import { useStore } from '../store.js';
import History from './History.jsx';
import Viewer from './Viewer.jsx';

function Images({ items, onOpen }) {
  if (items.length === 0) return <div className="palette-empty">images from this session appear here</div>;
  return items.map((item, index) => (
    <button type="button" key={item.sha} className="gallery-item" onClick={() => onOpen(index)} title="view larger">
      <img src={api.artifactUrl(item.sha)} alt={`image from job ${item.job}`} data-artifact={item.sha} />
    </button>
  ));
}

export default function Gallery() {
  const gallery = useStore((state) => state.gallery);
  const items = useMemo(() => [...gallery].reverse(), [gallery]); // newest first
  const [tab, setTab] = useState('images');
  const [open, setOpen] = useState(null); // the index of the image shown large
  const tabButton = (name, label) => (
    <button type="button" role="tab" aria-selected={tab === name} className={`tab${tab === name ? ' active' : ''}`}
      onClick={() => setTab(name)}>{label}</button>
  );
  return (
    <>
      <aside className="gallery" aria-label="Gallery">
        <div className="tabs" role="tablist">
          {tabButton('images', <>Gallery <span className="count">{items.length}</span></>)}
          {tabButton('history', 'History')}
        </div>
        {tab === 'images' ? <Images items={items} onOpen={setOpen} /> : <History />}
      </aside>
      {open !== null && <Viewer items={items} index={open} onIndex={setOpen} />}
    </>
  );
}
