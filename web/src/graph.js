// Workflow JSON (API.md "Nodes") <-> React Flow nodes and edges, the default workflow, and a simple layout.

// The page-only node that shows the final image; it never reaches the server.
export const PREVIEW_TYPE = 'PreviewImage';
export const PREVIEW_SPEC = {
  inputs: { images: { schema: {}, required: true, socket: 'image' } },
  outputs: {},
  category: 'output',
  description: 'Shows the images it is wired to after each run (kept by the page, not sent to the server).',
};

// The page-only note: text on the canvas, kept in the saved document (ui.notes), never a node of the workflow.
export const NOTE_TYPE = 'Note';
export const NOTE_SPEC = {
  inputs: {}, outputs: {}, category: 'output',
  description: 'A note on the canvas, for whoever opens the workflow next (saved with it, never run).',
};

// The page-only group: a titled box behind nodes; moving it moves the nodes inside (ui.groups).
export const GROUP_TYPE = 'Group';
export const GROUP_SPEC = {
  inputs: {}, outputs: {}, category: 'output',
  description: 'A titled box to keep nodes together: moving it moves the nodes inside (Ctrl+G groups the selected ones).',
};
export const GROUP_SIZE = { width: 420, height: 300 }; // a new, empty group's

/** The React Flow node kind of a node type: the page-only preview, note and group, or a catalog block. */
export const kindOf = (type) => ({ [PREVIEW_TYPE]: 'preview', [NOTE_TYPE]: 'note', [GROUP_TYPE]: 'box' }[type] || 'block');

/** A group node (behind every other node) at `position`, `size` {width, height}, titled `title`. */
export function groupNode(id, position, size, title = 'Group') {
  return {
    id, type: 'box', position, zIndex: -1, dragHandle: '.group-title', ...size,
    data: { nodeType: GROUP_TYPE, values: { title } },
  };
}

const LINK = (node, output) => ({ node, output });

/** The text-to-image workflow on the embedded model, from leaf blocks so per-node caching shows. */
export const DEFAULT_WORKFLOW = {
  nodes: {
    load: { type: 'LoadComponents', inputs: { repo: 'embedded' } },
    text: {
      type: 'StableDiffusionTextEncoderStep',
      inputs: { components: LINK('load', 'components'), prompt: 'a handwritten digit seven' },
    },
    input: {
      type: 'StableDiffusionInputStep',
      inputs: {
        prompt_embeds: LINK('text', 'prompt_embeds'),
        negative_prompt_embeds: LINK('text', 'negative_prompt_embeds'),
      },
    },
    steps: {
      type: 'StableDiffusionSetTimestepsStep',
      inputs: { components: LINK('load', 'components'), num_inference_steps: 4 },
    },
    latents: {
      type: 'StableDiffusionPrepareLatentsStep',
      inputs: {
        components: LINK('load', 'components'),
        batch_size: LINK('input', 'batch_size'),
        dtype: LINK('input', 'dtype'),
        seed: 0,
      },
    },
    denoise: {
      type: 'StableDiffusionDenoiseStep',
      inputs: {
        components: LINK('load', 'components'),
        // the scheduler whose timesteps were set (the bundle's own has none set)
        scheduler: LINK('steps', 'scheduler'),
        timesteps: LINK('steps', 'timesteps'),
        num_inference_steps: LINK('steps', 'num_inference_steps'),
        latents: LINK('latents', 'latents'),
        prompt_embeds: LINK('input', 'prompt_embeds'),
        negative_prompt_embeds: LINK('input', 'negative_prompt_embeds'),
      },
    },
    decode: {
      type: 'StableDiffusionDecodeStep',
      inputs: { components: LINK('load', 'components'), latents: LINK('denoise', 'latents') },
    },
  },
  ui: {
    previews: { output: LINK('decode', 'images') },
    // columns left to right in the order the data flows; hand-placed so wires rarely cross
    positions: {
      load: { x: 0, y: 160 },
      text: { x: 290, y: 0 },
      steps: { x: 290, y: 320 },
      input: { x: 580, y: 0 },
      latents: { x: 580, y: 240 },
      denoise: { x: 870, y: 60 },
      decode: { x: 1160, y: 60 },
      output: { x: 1160, y: 320 },
    },
  },
};

/** A text-to-image document with the settings another tool's image holds: {prompt, negative, steps, seed, width,
 * height, cfg, scheduler (a scheduler node type), sampling (changes to the model's scheduler config, such as
 * prediction_type or use_karras_sigmas: the scheduler node's, Euler's without a type), clipSkip (A1111's Clip skip: 2
 * reads CLIP's layer before the last), freeu ({b1, b2, s1, s2, version}: a FreeU node after the LoRAs and adapters;
 * not for FLUX.1), tiledVae (true: a TiledVAE node last in the chain), hires ({scale, strength, steps, seed,
 * latent}: a hires fix, a second pass (its own steps and seed, when given; ``latent``: how a ScaleLatents node
 * enlarges the first pass's latents, else a ScaleImage node its image); the auto preset, with the adapters' inputs,
 * when there are adapters: a ControlNet unless ``control.hires`` is false)},
 * each left out when null. ``model``: {repo} (a LoadComponents node, the SD 1.x preset), {repo, family: 'flux'}
 * (a FLUX.1 folder, the FLUX.1 preset; the settings' ``guidance`` and ``prompt2`` are its) or {checkpoint, family} (a
 * LoadCheckpoint node of the server's model folders, the preset of its family: sdxl's, else SD 1.x's, which runs
 * SD 2.x too), ``loras`` ({name, scale, textEncoderScale}: a LoadLoRA node each, in a chain), ``embeddings``
 * ({name}: a file of the server's embeddings, a LoadTextualInversion node each after them), ``transformer`` (a
 * FLUX.1 transformer file of the server's diffusion models, or ``transformerCheckpoint``, an all-in-one file of its
 * checkpoints: a LoadFluxTransformer node first in the chain, the folder loaded without its own), ``vae`` (a file
 * of the server's VAEs: a LoadVAE node after them, which takes the bundle's VAE config and replaces its VAE) and
 * ``control`` ({name (a file of the server's ControlNets), strength, start, end}: a LoadControlNet node and an empty
 * LoadImage node for its control image, with the family's ControlNet preset) and ``ipAdapter`` ({name, encoder
 * (files of the server's ipadapter and clip_vision folders), weight}: a LoadIPAdapter node in the chain and an empty
 * LoadImage node for its image, with the family's IP-Adapter preset); with both, the family's auto preset. */
export function text2imageGraph(model, settings) {
  const { prompt, negative, steps, seed, width, height, cfg, scheduler } = settings;
  const chain = {}; // the nodes the bundle goes through on its way to the preset: LoRAs, embeddings, IP-Adapter, VAE
  let bundle = LINK('load', 'components');
  const { transformer, transformerCheckpoint } = model;
  if (transformer || transformerCheckpoint) { // FLUX.1's from a file, into the bundle loaded without the folder's own
    chain.transformer = { type: 'LoadFluxTransformer', inputs: transformer ? { file: transformer, components: bundle }
      : { checkpoint: transformerCheckpoint, components: bundle } };
    bundle = LINK('transformer', 'components');
  }
  (model.loras || []).forEach(({ name, scale, textEncoderScale }, index) => {
    const id = index ? `lora${index + 1}` : 'lora';
    chain[id] = { type: 'LoadLoRA', inputs: { components: bundle, repo: name, scale } };
    if (textEncoderScale !== null && textEncoderScale !== undefined) {
      chain[id].inputs.text_encoder_scale = textEncoderScale;
    }
    bundle = LINK(id, 'components');
  });
  (model.embeddings || []).forEach(({ name }, index) => { // the token: the file's stem, as the prompt has it
    const id = index ? `embedding${index + 1}` : 'embedding';
    chain[id] = { type: 'LoadTextualInversion', inputs: { components: bundle, file: name } };
    bundle = LINK(id, 'components');
  });
  const { ipAdapter } = model;
  if (ipAdapter) {
    chain.ipadapter = { type: 'LoadIPAdapter', inputs: { components: bundle, repo: ipAdapter.name,
      image_encoder: ipAdapter.encoder } };
    if (ipAdapter.weight !== null && ipAdapter.weight !== 1) chain.ipadapter.inputs.scale = ipAdapter.weight;
    bundle = LINK('ipadapter', 'components');
  }
  const { freeu } = settings;
  if (freeu && model.family !== 'flux') { // on the UNet the LoRAs and adapters left (a transformer has no skips)
    const { b1, b2, s1, s2, version } = freeu;
    chain.freeu = { type: 'FreeU', inputs: { components: bundle, b1, b2, s1, s2, version } };
    bundle = LINK('freeu', 'components');
  }
  if (model.vae) {
    chain.vae = { type: 'LoadVAE', inputs: { file: model.vae, components: bundle } };
    bundle = LINK('vae', 'components');
  }
  if (settings.tiledVae) { // ComfyUI's VAEDecodeTiled: the VAE, the loaded one or the file's, works in tiles
    chain.tiles = { type: 'TiledVAE', inputs: { components: bundle } };
    bundle = LINK('tiles', 'components');
  }
  const inputs = { components: bundle, prompt };
  if (settings.prompt2) inputs.prompt_2 = settings.prompt2; // FLUX.1's T5 prompt, when it has its own
  if (negative) inputs.negative_prompt = negative;
  if (settings.guidance !== null && settings.guidance !== undefined) inputs.guidance_scale = settings.guidance;
  if (steps !== null && steps !== undefined) inputs.num_inference_steps = steps;
  if (seed !== null && seed !== undefined) inputs.seed = seed;
  if (width && height) Object.assign(inputs, { width, height });
  const nodes = {
    load: model.checkpoint ? { type: 'LoadCheckpoint', inputs: { file: model.checkpoint } }
      : { type: 'LoadComponents',
        inputs: { repo: model.repo, ...(chain.transformer ? { without: ['transformer'] } : {}) } },
    ...chain,
  };
  if (cfg !== null && cfg !== undefined) {
    nodes.cfg = { type: 'ClassifierFreeGuidance', inputs: { guidance_scale: cfg } };
    inputs.guider = LINK('cfg', 'guider');
  }
  const { sampling } = settings; // what the model is set to predict: its scheduler config changed (Euler's, if none)
  if (scheduler || sampling) {  // the model's own scheduler config, this sampler's steps
    nodes.sampler = { type: scheduler || 'EulerDiscreteScheduler',
      inputs: { scheduler: LINK('load', 'scheduler'), ...(sampling || {}) } };
    inputs.scheduler = LINK('sampler', 'scheduler');
  }
  const family = model.family === 'sdxl' || model.family === 'flux' ? model.family : 'sd15';
  // A1111's Clip skip as the preset counts it: from the last layer, SD 1.x's; from the one before it, SDXL's
  const clipSkip = settings.clipSkip ? settings.clipSkip - (family === 'sdxl' ? 2 : 1) : 0;
  if (clipSkip > 0 && family !== 'flux') inputs.clip_skip = clipSkip;
  const { control } = model;
  if (control) { // the image is ComfyUI's input file: the page has none, so the node waits for an upload
    const loader = family === 'flux' ? 'LoadFluxControlNet' : 'LoadControlNet';
    nodes.controlnet = { type: loader, inputs: { repo: control.name } };
    nodes.control = { type: 'LoadImage', inputs: {} };
    Object.assign(inputs, { controlnet: LINK('controlnet', 'controlnet'), control_image: LINK('control', 'image') });
    if (control.strength !== null) inputs.controlnet_conditioning_scale = control.strength;
    if (control.start) inputs.control_guidance_start = control.start;
    if (control.end !== null && control.end !== 1) inputs.control_guidance_end = control.end;
  }
  const { kontext, inpaint } = model;
  if (inpaint) { // the image and its mask: ComfyUI's input files (or its image's transparency): the page has neither
    Object.assign(nodes, { source: { type: 'LoadImage', inputs: {} }, mask: { type: 'LoadImage', inputs: {} } });
    Object.assign(inputs, { image: LINK('source', 'image'), mask_image: LINK('mask', 'image') });
    if (settings.strength !== null && settings.strength !== undefined) inputs.strength = settings.strength;
  }
  if (kontext) { // FLUX.1 Kontext's image to edit: as the control image, ComfyUI's input file
    nodes.source = { type: 'LoadImage', inputs: {} };
    inputs.image = LINK('source', 'image');
    if (!kontext.autoResize) inputs.auto_resize = false; // ComfyUI takes it as it is, without FluxKontextImageScale
  }
  if (ipAdapter) { // as the control image: ComfyUI's input file, which the page has not
    nodes.reference = { type: 'LoadImage', inputs: {} };
    inputs.ip_adapter_image = LINK('reference', 'image');
  }
  // an inpainting model's graph on FLUX.1 is Fill's; with adapters, the auto preset inpaints with them
  const inpaintTask = inpaint
    && (control || ipAdapter ? 'auto' : family === 'flux' && inpaint.model ? 'fill' : 'inpaint');
  const task = kontext ? 'kontext' : inpaintTask || (control && ipAdapter ? 'auto' : control ? 'controlnet'
    : ipAdapter ? 'ip-adapter' : 'text2image');
  nodes.run = { type: `preset:${family}-${task}`, inputs };
  let images = LINK('run', 'images');
  if (settings.hires) { // a hires fix (A1111's, ComfyUI's second KSampler): the first pass enlarged, painted again
    // the adapters act on this pass too: an IP-Adapter patches the model both passes take, a ControlNet the
    // conditioning (A1111's Hr Option "Both", its default)
    const controlled = Boolean(control) && control.hires !== false;
    const kept = (name) => (name.startsWith('control') ? controlled : !name.startsWith('ip_adapter') || Boolean(ipAdapter));
    const again = Object.fromEntries(Object.entries(inputs).filter(([name]) => name !== 'width' && name !== 'height'
      && kept(name)));
    const { latent } = settings.hires; // enlarged as latents (A1111's Latent upscalers): no decode between the passes
    const scaleBy = settings.hires.scale;
    if (latent && family !== 'flux') {
      inputs.output_type = 'latent';
      nodes.scale = { type: 'ScaleLatents', inputs: { latents: images, scale_by: scaleBy, method: latent } };
    } else {
      nodes.scale = { type: 'ScaleImage', inputs: { image: images, scale_by: scaleBy, method: 'lanczos' } };
    }
    nodes.hires = { type: `preset:${family}-${controlled || ipAdapter ? 'auto' : 'image2image'}`,
      inputs: { ...again, image: LINK('scale', nodes.scale.type === 'ScaleLatents' ? 'latents' : 'image'),
        strength: settings.hires.strength } };
    const { steps: hiresSteps, seed: hiresSeed } = settings.hires; // ComfyUI's second KSampler has its own
    if (hiresSteps !== null && hiresSteps !== undefined) nodes.hires.inputs.num_inference_steps = hiresSteps;
    if (hiresSeed !== null && hiresSeed !== undefined) nodes.hires.inputs.seed = hiresSeed;
    images = LINK('hires', 'images');
  }
  // columns in the order the data flows: loaders (an adapter's image below them), the chain above the sampler, the
  // preset, (the hires pass,) its images
  const last = settings.hires ? 4 : 2;
  const positions = { load: { x: 0, y: 0 }, run: { x: 2 * COLUMN, y: 0 }, output: { x: (last + 1) * COLUMN, y: 0 } };
  if (settings.hires) Object.assign(positions, { scale: { x: 3 * COLUMN, y: 0 }, hires: { x: 4 * COLUMN, y: 0 } });
  if (nodes.cfg) positions.cfg = { x: 0, y: 330 };
  let y = 0; // the chain stacked in its column, each node below the one before, then the sampler
  Object.entries(chain).forEach(([id, { type }]) => {
    positions[id] = { x: COLUMN, y };
    y += HEIGHTS[type];
  });
  if (nodes.sampler) positions.sampler = { x: COLUMN, y };
  const top = nodes.cfg ? 690 : 330; // below the loader and the guider: the ControlNet and its image
  if (control) {
    Object.assign(positions, { controlnet: { x: 0, y: top }, control: { x: 0, y: top + CONTROLNET_HEIGHT } });
  }
  if (ipAdapter) positions.reference = { x: 0, y: control ? top + CONTROLNET_HEIGHT + IMAGE_HEIGHT : top };
  if (kontext) positions.source = { x: 0, y: top };
  if (inpaint) { // below the adapters' images
    const y = top + (control ? CONTROLNET_HEIGHT + IMAGE_HEIGHT : 0) + (ipAdapter ? IMAGE_HEIGHT : 0);
    Object.assign(positions, { source: { x: 0, y }, mask: { x: 0, y: y + IMAGE_HEIGHT } });
  }
  return { nodes, ui: { previews: { output: images }, positions } };
}

const COLUMN = 290; // px from one column of nodes to the next
// the height a chain node takes in its column, its inputs shown
const HEIGHTS = { LoadFluxTransformer: 250, LoadLoRA: 390, LoadTextualInversion: 250, LoadIPAdapter: 480, LoadVAE: 250,
  FreeU: 390, TiledVAE: 110 };
const CONTROLNET_HEIGHT = 260; // a LoadControlNet node, its three inputs shown
const IMAGE_HEIGHT = 260; // a LoadImage node, room for its picture once uploaded (the images stack below it)

export const isLink = (value) =>
  Boolean(value) && typeof value === 'object' && !Array.isArray(value) && typeof value.node === 'string' &&
  typeof value.output === 'string' && Object.keys(value).length === 2;

export const edgeId = (source, output, target, input) => `${source}.${output}->${target}.${input}`;

export function makeEdge(source, output, target, input) {
  return { id: edgeId(source, output, target, input), source, sourceHandle: output, target, targetHandle: input };
}

/** The workflow JSON the server runs (page-only preview nodes and positions left out). */
export function toWorkflow(nodes, edges) {
  const result = {};
  for (const node of nodes) {
    if (node.type !== 'block') continue;
    const inputs = { ...node.data.values };
    result[node.id] = { type: node.data.nodeType, inputs, ...(node.data.bypass ? { bypass: true } : {}) };
  }
  for (const edge of edges) {
    if (result[edge.target]) result[edge.target].inputs[edge.targetHandle] = LINK(edge.source, edge.sourceHandle);
  }
  return { nodes: result };
}

/** The workflow plus what only the page needs (preview nodes, notes, groups, positions, seed controls, collapsed
 * nodes): what Save writes. */
export function toDocument(nodes, edges) {
  const workflow = toWorkflow(nodes, edges);
  const previews = {};
  const positions = {};
  const controls = {};
  const collapsed = [];
  const notes = {};
  const groups = {};
  for (const node of nodes) {
    positions[node.id] = { x: Math.round(node.position.x), y: Math.round(node.position.y) };
    if (node.data.control) controls[node.id] = { ...node.data.control };
    if (node.data.collapsed) collapsed.push(node.id);
    if (node.type === 'note') notes[node.id] = node.data.values.text || '';
    if (node.type === 'box') {
      groups[node.id] = { title: node.data.values.title || '', width: Math.round(node.width), height: Math.round(node.height) };
    }
    if (node.type !== 'preview') continue;
    const edge = edges.find((e) => e.target === node.id);
    previews[node.id] = edge ? LINK(edge.source, edge.sourceHandle) : null;
  }
  const extra = {
    ...(Object.keys(controls).length ? { controls } : {}), ...(collapsed.length ? { collapsed } : {}),
    ...(Object.keys(notes).length ? { notes } : {}), ...(Object.keys(groups).length ? { groups } : {}),
  };
  return { ...workflow, ui: { previews, positions, ...extra } };
}

/** React Flow nodes and edges from a saved document or a bare workflow (laid out when it has no positions). */
export function fromDocument(document) {
  if (!document || typeof document !== 'object' || !document.nodes || typeof document.nodes !== 'object') {
    throw new Error('not a workflow: expected {"nodes": {"<id>": {"type": ..., "inputs": {...}}}}');
  }
  const nodes = [];
  const edges = [];
  for (const [id, spec] of Object.entries(document.nodes)) {
    if (!spec || typeof spec.type !== 'string') throw new Error(`node "${id}" has no "type"`);
    const values = {};
    for (const [name, value] of Object.entries(spec.inputs || {})) {
      if (isLink(value)) edges.push(makeEdge(value.node, value.output, id, name));
      else values[name] = value;
    }
    const data = { nodeType: spec.type, values, ...(spec.bypass === true ? { bypass: true } : {}) };
    nodes.push({ id, type: 'block', position: { x: 0, y: 0 }, data });
  }
  const ui = document.ui || {};
  for (const node of nodes) {
    const control = (ui.controls || {})[node.id];
    if (control && typeof control === 'object' && Object.keys(control).length) node.data.control = { ...control };
    if (Array.isArray(ui.collapsed) && ui.collapsed.includes(node.id)) node.data.collapsed = true;
  }
  for (const [id, source] of Object.entries(ui.previews || {})) {
    nodes.push({ id, type: 'preview', position: { x: 0, y: 0 }, data: { nodeType: PREVIEW_TYPE, values: {} } });
    if (source) edges.push(makeEdge(source.node, source.output, id, 'images'));
  }
  for (const [id, text] of Object.entries(ui.notes || {})) {
    nodes.push({ id, type: 'note', position: { x: 0, y: 0 }, data: { nodeType: NOTE_TYPE, values: { text: String(text) } } });
  }
  for (const [id, group] of Object.entries(ui.groups || {})) {
    const size = { width: Number(group.width) || GROUP_SIZE.width, height: Number(group.height) || GROUP_SIZE.height };
    nodes.push(groupNode(id, { x: 0, y: 0 }, size, String(group.title ?? 'Group')));
  }
  const positions = ui.positions || {};
  const placed = nodes.every((node) => positions[node.id]);
  const laidOut = placed ? positions : layout(nodes, edges);
  return { nodes: nodes.map((node) => ({ ...node, position: { ...laidOut[node.id] } })), edges };
}

/** Columns by longest path from the sources, stacked top to bottom: {id: {x, y}}. */
export function layout(nodes, edges) {
  const depth = {};
  const parents = {};
  nodes.forEach((node) => (parents[node.id] = []));
  edges.forEach((edge) => parents[edge.target] && parents[edge.target].push(edge.source));
  const visit = (id, trail = new Set()) => {
    if (id in depth) return depth[id];
    if (trail.has(id) || !(id in parents)) return 0;
    trail.add(id);
    depth[id] = parents[id].reduce((most, parent) => Math.max(most, visit(parent, trail) + 1), 0);
    return depth[id];
  };
  nodes.forEach((node) => visit(node.id));
  const rows = {};
  const result = {};
  for (const node of nodes) {
    const column = depth[node.id] || 0;
    rows[column] = rows[column] || 0;
    result[node.id] = { x: column * COLUMN, y: rows[column] };
    rows[column] += 300;
  }
  return result;
}

// words of a class name; names that are one word despite their capitals stay whole
const WORDS = /LoRA|ControlNet|Img2Img|XL(?=IP)|[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z0-9]+/g;

/** A short title for a node type: "StableDiffusionTextEncoderStep" -> "Text Encoder". */
export function shortTitle(type) {
  const bare = type.replace(/^preset:/, '').replace(/^StableDiffusion/, '').replace(/Step$/, '') || type;
  if (type.startsWith('preset:')) return bare;
  return (bare.match(WORDS) || [bare]).join(' ');
}

/** A fresh node id for a node of `type` that no node in `nodes` has. */
export function freshId(type, nodes) {
  const stem = shortTitle(type).toLowerCase().replace(/[^a-z0-9]+/g, '_').replace(/^_|_$/g, '') || 'node';
  const taken = new Set(nodes.map((node) => node.id));
  if (!taken.has(stem)) return stem;
  let n = 2;
  while (taken.has(`${stem}${n}`)) n += 1;
  return `${stem}${n}`;
}

/** The nodes to run for `targets` (ids): the targets and every node they are wired from, however far up. */
export function needed(edges, targets) {
  const found = new Set();
  const stack = [...targets];
  while (stack.length) {
    const id = stack.pop();
    if (found.has(id)) continue;
    found.add(id);
    edges.forEach((edge) => edge.target === id && stack.push(edge.source));
  }
  return found;
}

/** The nodes "Run selected" runs up to: the selected block nodes, and what a selected Preview node shows. */
export function selectedTargets(nodes, edges) {
  const targets = new Set();
  for (const node of nodes) {
    if (!node.selected) continue;
    if (node.type === 'block') targets.add(node.id);
    else edges.filter((edge) => edge.target === node.id).forEach((edge) => targets.add(edge.source));
  }
  return [...targets];
}

/** Whether adding source -> target would close a cycle. */
export function makesCycle(edges, source, target) {
  if (source === target) return true;
  const stack = [target];
  const seen = new Set();
  while (stack.length) {
    const id = stack.pop();
    if (id === source) return true;
    if (seen.has(id)) continue;
    seen.add(id);
    edges.forEach((edge) => edge.source === id && stack.push(edge.target));
  }
  return false;
}
