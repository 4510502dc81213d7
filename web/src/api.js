// The one module that talks to `diffblocks serve` (routes as in API.md, section "Nodes").

/** An HTTP error from the API; `errors` holds the [{node, input, message}] list when the server sent one. */
export class ApiError extends Error {
  constructor(status, message, errors = []) {
    super(message);
    this.status = status;
    this.errors = errors;
  }
}

// FastAPI wraps refusals as {"detail": ...}; the engine's problems are [{node, input, message}] lists.
function errorsOf(body) {
  const detail = body && typeof body === 'object' && 'detail' in body ? body.detail : body;
  if (Array.isArray(detail)) return detail.filter((e) => e && typeof e === 'object' && 'message' in e);
  if (detail && Array.isArray(detail.errors)) return detail.errors;
  if (body && Array.isArray(body.errors)) return body.errors;
  if (detail && typeof detail === 'object' && 'message' in detail) return [detail];
  return [];
}

function messageOf(body, status) {
  const detail = body && typeof body === 'object' && 'detail' in body ? body.detail : body;
  if (typeof detail === 'string') return detail;
  const errors = errorsOf(body);
  if (errors.length) return errors.map((e) => e.message).join('; ');
  return `HTTP ${status}`;
}

// Python's json writes -Infinity, Infinity and NaN (e.g. a schema default of float('-inf')), which JSON.parse
// refuses; read them as null rather than lose the whole answer.
const NON_FINITE = /([:[,]\s*)(-?Infinity|NaN)(?=\s*[,\]}])/g;

function parseBody(text, contentType) {
  if (!text) return null;
  if (!contentType.includes('json')) return text;
  try {
    return JSON.parse(text);
  } catch (error) {
    try {
      return JSON.parse(text.replace(NON_FINITE, '$1null'));
    } catch {
      throw error;
    }
  }
}

async function request(method, path, body) {
  const init = { method, headers: {} };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers['Content-Type'] = 'application/json';
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = parseBody(text, response.headers.get('Content-Type') || '');
  if (!response.ok) throw new ApiError(response.status, messageOf(data, response.status), errorsOf(data));
  return data;
}

export const api = {
  nodes: () => request('GET', '/api/nodes'),
  models: () => request('GET', '/api/models'), // {kind: [file names]} of the --models-dir folders
  // {kind, name, bytes, family, problem} of one of them (family: a checkpoint's, sd15 | sd2 | sdxl)
  modelFile: (kind, name) => request('GET', `/api/models/${encodeURIComponent(kind)}/`
    + name.split('/').map(encodeURIComponent).join('/')),
  validate: (workflow) => request('POST', '/api/validate', { workflow }),
  submit: (workflow, priority = 0) => request('POST', '/api/jobs', { workflow, priority }),
  job: (id) => request('GET', `/api/jobs/${encodeURIComponent(id)}`),
  jobs: (limit = 50) => request('GET', `/api/jobs?limit=${limit}`),
  cancel: (id) => request('DELETE', `/api/jobs/${encodeURIComponent(id)}`),
  upload(file) {
    const form = new FormData();
    form.append('file', file);
    return request('POST', '/api/uploads', form);
  },
  artifactUrl: (sha) => `/api/artifacts/${sha}`,
};

/**
 * Follows WS /api/events, reconnecting (with `?since=<last seq>`) whenever the socket closes, e.g. while the
 * server restarts. `onEvent(event)` gets each event; `onStatus('connected' | 'disconnected', reconnected)`.
 */
export function followEvents({ onEvent, onStatus, lastSeq }) {
  let socket = null;
  let stopped = false;
  let delay = 250;
  let everConnected = false;

  function url() {
    const scheme = window.location.protocol === 'https:' ? 'wss' : 'ws';
    const since = lastSeq();
    const query = since === null ? '' : `?since=${since}`;
    return `${scheme}://${window.location.host}/api/events${query}`;
  }

  function connect() {
    if (stopped) return;
    socket = new WebSocket(url());
    socket.onopen = () => {
      delay = 250;
      onStatus('connected', everConnected);
      everConnected = true;
    };
    socket.onmessage = (message) => {
      try {
        onEvent(JSON.parse(message.data));
      } catch (error) {
        console.warn('unreadable event', error);
      }
    };
    socket.onclose = () => {
      if (stopped) return;
      onStatus('disconnected', everConnected);
      // back off to 2 s so a restarting server is found quickly without hammering it
      setTimeout(connect, delay);
      delay = Math.min(delay * 2, 2000);
    };
  }

  connect();
  return () => {
    stopped = true;
    if (socket) socket.close();
  };
}
