// What the catalog's JSON schemas and socket types mean for the page: which widget an input gets and which
// wires are allowed (the same rules as the engine's validation, so a refused wire never reaches the server).

/** The schema without its "or null" branch: {schema, nullable}. */
export function baseSchema(schema) {
  if (!schema || typeof schema !== 'object') return { schema: {}, nullable: false };
  const branches = schema.anyOf || schema.oneOf;
  if (Array.isArray(branches)) {
    const rest = branches.filter((branch) => branch && branch.type !== 'null');
    const nullable = rest.length < branches.length;
    // "a prompt or a list of prompts": the widget edits the first (simplest) form; wires and JSON take the rest
    if (rest.length >= 1) return { schema: { ...without(schema, ['anyOf', 'oneOf']), ...rest[0] }, nullable };
    return { schema, nullable };
  }
  if (Array.isArray(schema.type)) {
    const types = schema.type.filter((type) => type !== 'null');
    return { schema: { ...schema, type: types.length === 1 ? types[0] : types }, nullable: types.length < schema.type.length };
  }
  return { schema, nullable: false };
}

function without(object, keys) {
  const copy = { ...object };
  keys.forEach((key) => delete copy[key]);
  return copy;
}

/** The JSON type an input's schema takes ("integer", "string", ...), or null when it has none. */
export function jsonType(schema) {
  const base = baseSchema(schema).schema;
  if (Array.isArray(base.enum)) return 'enum';
  return typeof base.type === 'string' ? base.type : null;
}

const PROMPT_LIKE = /prompt|text|caption/i;

/** An input's widget kind: "image", "enum", "boolean", "integer", "number", "text", "string", "json" or null. */
export function widgetKind(name, spec, nodeType) {
  const base = baseSchema(spec.schema).schema;
  if (spec.socket === 'image' || isArtifactSchema(base) || (nodeType === 'LoadImage' && name === 'image')) return 'image';
  const type = jsonType(spec.schema);
  if (type === 'enum') return 'enum';
  if (type === 'boolean') return 'boolean';
  if (type === 'integer' || type === 'number') return type;
  if (type === 'string') return PROMPT_LIKE.test(name) || (base.maxLength || 0) > 200 ? 'text' : 'string';
  if (type === 'array' || type === 'object') return 'json';
  return null;
}

function isArtifactSchema(schema) {
  return Boolean(schema.properties && schema.properties.artifact);
}

/** Inclusive bounds of a number schema (exclusive bounds moved one integer step, or a hair, inside). */
export function bounds(schema, integer) {
  const base = baseSchema(schema).schema;
  const inside = integer ? 1 : 1e-6;
  let min = base.minimum;
  let max = base.maximum;
  if (typeof base.exclusiveMinimum === 'number') min = base.exclusiveMinimum + inside;
  if (typeof base.exclusiveMaximum === 'number') max = base.exclusiveMaximum - inside;
  return { min: typeof min === 'number' ? min : undefined, max: typeof max === 'number' ? max : undefined };
}

// socket names the catalog may use for JSON-typed outputs, by JSON type
const JSON_SOCKETS = {
  integer: ['integer', 'int'],
  number: ['number', 'float', 'integer', 'int'],
  string: ['string', 'str'],
  boolean: ['boolean', 'bool'],
  array: ['array', 'list'],
  object: ['object', 'dict'],
};

/**
 * Whether an output of socket type `outSocket` may feed the input `spec` ({schema, socket}): same socket type;
 * an "image" input also takes a "tensor"; a widget-only input (socket null) takes an output of its JSON type.
 */
export function socketsMatch(outSocket, spec) {
  if (!spec || !outSocket) return false;
  if (spec.socket) {
    if (outSocket === spec.socket || outSocket === 'any' || spec.socket === 'any') return true;
    return spec.socket === 'image' && (outSocket === 'tensor' || outSocket === 'images');
  }
  const type = jsonType(spec.schema);
  if (type === 'enum') {
    const base = baseSchema(spec.schema).schema;
    const enumType = typeof base.enum[0] === 'number' ? 'number' : 'string';
    return (JSON_SOCKETS[enumType] || []).includes(outSocket);
  }
  return Boolean(type && (JSON_SOCKETS[type] || [type]).includes(outSocket));
}

/** The value a widget shows when the workflow leaves the input unset. */
export function defaultOf(spec) {
  const schema = spec.schema || {};
  if ('default' in schema) return schema.default;
  const base = baseSchema(schema).schema;
  return 'default' in base ? base.default : undefined;
}
