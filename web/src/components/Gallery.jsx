// The session's images, newest first.
import { api } from '../api.js';
import { useStore } from '../store.js';

export default function Gallery() {
  const gallery = useStore((state) => state.gallery);
  return (
    <aside className="gallery" aria-label="Gallery">
      <div className="gallery-title">Gallery <span className="count">{gallery.length}</span></div>
      {gallery.length === 0 && <div className="palette-empty">images from this session appear here</div>}
      {[...gallery].reverse().map((item) => (
        <a key={item.sha} href={api.artifactUrl(item.sha)} target="_blank" rel="noreferrer" className="gallery-item">
          <img src={api.artifactUrl(item.sha)} alt={`image from job ${item.job}`} data-artifact={item.sha} />
        </a>
      ))}
    </aside>
  );
}
