// The model files `diffblocks serve --models-dir` finds (GET /api/models: {kind: [name, ...]}), shared by every
// loader widget of the page: one request when the first such widget appears, another when one gets focus (at most
// every REFETCH_MS), so files dropped into a folder show up without a reload.
import { useEffect, useSyncExternalStore } from 'react';

import { ApiError, api } from './api.js';

const REFETCH_MS = 2000;

// lists: {kind: [names]} once fetched, else null; unsupported: the server has no /api/models (older than the route)
let state = { lists: null, unsupported: false };
let fetchedAt = -Infinity;
let pending = null;
const listeners = new Set();

function update(changes) {
  state = { ...state, ...changes };
  listeners.forEach((listener) => listener());
}

/** Fetches the lists again unless a request is under way or the last one began under REFETCH_MS ago. */
export function refreshModelFiles() {
  if (state.unsupported || pending || Date.now() - fetchedAt < REFETCH_MS) return pending;
  fetchedAt = Date.now();
  pending = api.models().then(
    (lists) => update({ lists: lists && typeof lists === 'object' ? lists : {} }),
    (error) => {
      if (error instanceof ApiError && error.status === 404) update({ unsupported: true });
      else console.warn('could not list the model files', error);
    },
  ).finally(() => {
    pending = null;
  });
  return pending;
}

function subscribe(listener) {
  listeners.add(listener);
  return () => listeners.delete(listener);
}

/** The names the server offers for model folder `kind` (e.g. "checkpoints"); null while unknown or not served. */
export function useModelFiles(kind) {
  const { lists } = useSyncExternalStore(subscribe, () => state);
  useEffect(() => {
    if (state.lists === null) refreshModelFiles();
  }, []);
  const names = lists && lists[kind];
  return Array.isArray(names) ? names : null;
}

// a weights file's suffix, left out when names are compared by stem
const SUFFIX = /\.(safetensors|sft|ckpt|pt|pth|bin)$/i;
/** A file name's stem, as A1111's prompts and ComfyUI's `embedding:NAME` name a file. */
export const stemOf = (name) => name.split('/').pop().replace(SUFFIX, '');
const stem = (name) => stemOf(name).toLowerCase();

/** The name among the server's files of `kind` that another tool's name for one stands for, or null: ComfyUI's
 * (the path under its models/ folder, `\\`-separated when saved on Windows; else the same file name in any
 * subfolder) or A1111's (the file's name without its suffix, as its prompts' <lora:NAME:1> and its "Model:" give
 * it). A name that fits several files by their names alone picks none. */
export async function findModel(kind, wanted) {
  if (typeof wanted !== 'string' || !wanted) return null;
  const names = await modelNames(kind);
  const path = wanted.replace(/\\/g, '/');
  const alike = names.filter((name) => stem(name) === stem(path));
  return names.find((candidate) => candidate === path)
    || names.find((candidate) => candidate.toLowerCase() === path.toLowerCase())
    || (alike.length === 1 ? alike[0] : null);
}

/** The names the server offers for model folder `kind`, fetched again when older than REFETCH_MS ([] when the
 * server has none or no model folders). */
export async function modelNames(kind) {
  if (state.lists === null || Date.now() - fetchedAt >= REFETCH_MS) await refreshModelFiles();
  const names = state.lists && state.lists[kind];
  return Array.isArray(names) ? names : [];
}

/** findModel's checkpoint as {name, family, problem} (GET /api/models/checkpoints/{name}: family sd15, sd2 or
 * sdxl, or null and the problem), or null. */
export async function findCheckpoint(wanted) {
  const name = await findModel('checkpoints', wanted);
  if (!name) return null;
  const { family, problem } = await api.modelFile('checkpoints', name);
  return { name, family, problem };
}

const FAMILIES = { sd15: 'SD 1.x', sd2: 'SD 2.x', sdxl: 'SDXL', flux: 'FLUX.1' }; // as GET /api/models/{kind}/{name}

/** The family (its name, as "SDXL") the server's file `name` of `kind` is made for when it is not `family` (the
 * model's), as A1111 skips a LoRA or embedding of another family; null when it fits, or cannot be told. */
export async function otherFamily(kind, name, family) {
  const { family: its } = await api.modelFile(kind, name).catch(() => ({ family: null }));
  return its && its !== family ? FAMILIES[its] : null;
}

/** The server's FLUX.1 model folder (of its diffusers folder: GET /api/models/diffusers/{name} says family flux)
 * for a transformer named `hint`: one that is schnell when the name says schnell, else the first; null when the
 * server has none. */
export async function findFluxFolder(hint) {
  const folders = [];
  for (const name of await modelNames('diffusers')) {
    const { family } = await api.modelFile('diffusers', name).catch(() => ({ family: null }));
    if (family === 'flux') folders.push(name);
  }
  const schnell = (name) => /schnell/i.test(name || '');
  return folders.find((name) => schnell(name) === schnell(hint)) || folders[0] || null;
}

// the names CLIP vision encoders go by, by size (ComfyUI's CLIP-ViT-H-14-laion2B-s32B-b79K, A1111's clip_h)
const ENCODER_NAMES = { 'ViT-H/14': /vit-?h|clip[_-]?h\b|\bh-?14/i, 'ViT-bigG/14': /bigg|clip[_-]?g\b|vit-?g\b/i };

/** The server's CLIP vision model of `size` ('ViT-H/14', 'ViT-bigG/14') by its name, as an A1111 IP-Adapter unit
 * names its encoder by its preprocessor alone; the only one the server has when none is named so; else null. */
export async function findEncoder(size) {
  const names = await modelNames('clip_vision');
  const pattern = ENCODER_NAMES[size];
  return (pattern && names.find((name) => pattern.test(name))) || (names.length === 1 ? names[0] : null);
}
