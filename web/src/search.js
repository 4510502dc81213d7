// Finding node types: by words (the palette and the canvas's search box), and by a wire left on the empty
// canvas (which node types can take it, and on which of their sockets).
import { GROUP_SPEC, GROUP_TYPE, NOTE_SPEC, NOTE_TYPE, PREVIEW_SPEC, PREVIEW_TYPE, shortTitle } from './graph.js';
import { socketsMatch } from './schema.js';

/** Every node type the page can add: the catalog's and the page-only preview, note and group. */
export const nodeTypes = (catalog) => ({
  ...(catalog || {}), [PREVIEW_TYPE]: PREVIEW_SPEC, [NOTE_TYPE]: NOTE_SPEC, [GROUP_TYPE]: GROUP_SPEC,
});

/** Whether every word of `query` is in the type's name, title, category or description. */
export function matches(type, spec, query) {
  if (!query) return true;
  const haystack = `${type} ${shortTitle(type)} ${spec.category} ${spec.description}`.toLowerCase();
  return query.toLowerCase().split(/\s+/).every((word) => haystack.includes(word));
}

/** The input of `spec` that a wire from an output of socket `socket` goes into: an input of that very socket
 * before one that merely accepts it, a required one before an optional one; null when none fits. */
export function inputFor(spec, socket) {
  const fits = Object.entries(spec.inputs || {}).filter(([, input]) => socketsMatch(socket, input));
  fits.sort(([, a], [, b]) => (b.socket === socket) - (a.socket === socket) || Boolean(b.required) - Boolean(a.required));
  return fits.length ? fits[0][0] : null;
}

/** The output of `spec` that can feed the input `input` ({schema, socket}); null when none fits. */
export function outputFor(spec, input) {
  const fit = Object.entries(spec.outputs || {}).find(([, output]) => socketsMatch(output.socket, input));
  return fit ? fit[0] : null;
}

// exact title, then titles that start with the query, then the rest; alphabetical within each
function rank(type, query) {
  const title = shortTitle(type).toLowerCase();
  const words = query.toLowerCase().trim();
  if (!words || title === words) return 0;
  if (title.startsWith(words)) return 1;
  return title.split(' ').some((word) => word.startsWith(words)) ? 2 : 3;
}

// for a wire from an output: nodes for which it is a required input of its very socket first (a Scale Image for an
// image), then those with an input of that socket, then those that merely accept it
function fitRank(spec, wire) {
  if (!wire || wire.kind !== 'source') return 0;
  const input = spec.inputs[inputFor(spec, wire.socket)];
  return input.socket === wire.socket ? (input.required ? 0 : 1) : 2;
}

/** The model family of a catalog category ('stable_diffusion_xl/denoise', 'presets/flux' -> the family's name);
 * null for the nodes every family uses (loaders, guiders, schedulers, image, ...). */
export function familyOf(category) {
  const parts = (category || '').split('/');
  if (parts.length < 2) return null;
  return parts[0] === 'presets' ? parts[1] : parts[0];
}

// for a wire: nodes of the family its node is of, or of none, before another family's
function familyRank(spec, wire) {
  const family = familyOf(spec.category);
  return !wire || !wire.family || !family || family === wire.family ? 0 : 1;
}

/** Node types for the search box: `[type, spec]` matching `query` and, for a wire ({kind, socket | input,
 * family}), able to take it; best first. */
export function findNodes(catalog, query, wire = null, limit = 60) {
  const fits = (spec) => !wire ||
    (wire.kind === 'source' ? inputFor(spec, wire.socket) !== null : outputFor(spec, wire.input) !== null);
  return Object.entries(nodeTypes(catalog))
    .filter(([type, spec]) => matches(type, spec, query) && fits(spec))
    .map(([type, spec]) => [type, spec, rank(type, query), familyRank(spec, wire), fitRank(spec, wire)])
    .sort((a, b) => a[2] - b[2] || a[3] - b[3] || a[4] - b[4] || shortTitle(a[0]).localeCompare(shortTitle(b[0])))
    .slice(0, limit)
    .map(([type, spec]) => [type, spec]);
}
