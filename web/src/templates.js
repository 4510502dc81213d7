// The workflows in examples/workflows/, built into the page: the Templates menu loads one (the default graph
// first). Each file's name is its title: hires-fix.json is "Hires fix".
import { DEFAULT_WORKFLOW } from './graph.js';

const files = import.meta.glob('../../examples/workflows/*.json', { eager: true, import: 'default' });

const title = (path) => {
  const words = path.split('/').pop().replace(/\.json$/, '').replace(/[-_]+/g, ' ');
  return words.charAt(0).toUpperCase() + words.slice(1);
};

/** [{title, document}], the default text-to-image graph first, then the examples by title. */
export const TEMPLATES = [
  { title: 'Text to image', document: DEFAULT_WORKFLOW },
  ...Object.entries(files).map(([path, document]) => ({ title: title(path), document }))
    .sort((a, b) => a.title.localeCompare(b.title)),
];
