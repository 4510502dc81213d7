// The server's [{node, input, message}] problem lists, grouped as the page shows them: on a node's input, on the
// node, or in the banner (a problem of no node).

export const NO_ERRORS = { byNode: {}, general: [] };

export function groupErrors(errors) {
  const byNode = {};
  const general = [];
  for (const error of errors || []) {
    if (error.node === null || error.node === undefined) {
      general.push(error.message);
      continue;
    }
    const key = error.input || '';
    byNode[error.node] = byNode[error.node] || {};
    byNode[error.node][key] = [...(byNode[error.node][key] || []), error.message];
  }
  return { byNode, general };
}
