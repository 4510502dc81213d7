// Workflows inside PNGs: the server writes each job's workflow into its output images as a "workflow" tEXt
// chunk (as ComfyUI does), so an image loaded here brings back the graph that made it. An image from A1111 (or
// `diffblocks run`) holds its parameters instead ("parameters"), one from ComfyUI its graph in ComfyUI's terms
// ("prompt", comfy.js): either becomes a text-to-image graph, on the checkpoint it names when the server's model
// folders have it.
import { comfySettings, editorPrompt, freeuOf, isComfyEditorGraph, isComfyPrompt, samplerLeftOut, samplingOf,
} from './comfy.js';
import { text2imageGraph } from './graph.js';
import { fluxSettings, isFluxGraph } from './comfyFlux.js';
import { importedFlux } from './importFlux.js';
import { findAdapters, findLoras, inpaintUploads } from './importAdapters.js';
import { findCheckpoint, findModel, modelNames, otherFamily, stemOf } from './modelFiles.js';

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** The text chunks of a PNG as {keyword: text} (tEXt, and iTXt uncompressed: UTF-8); throws when the bytes are
 * not a PNG. */
export function pngText(buffer) {
  const bytes = new Uint8Array(buffer);
  if (bytes.length < 8 || SIGNATURE.some((value, i) => bytes[i] !== value)) throw new Error('not a PNG file');
  const view = new DataView(buffer);
  const latin1 = new TextDecoder('latin1');
  const found = {};
  for (let at = 8; at + 8 <= bytes.length;) {
    const length = view.getUint32(at);
    const type = latin1.decode(bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + length);
    const split = data.indexOf(0);
    if (type === 'tEXt' && split > 0) {
      found[latin1.decode(data.subarray(0, split))] = latin1.decode(data.subarray(split + 1));
    } else if (type === 'iTXt' && split > 0 && data[split + 1] === 0) {  // keyword, flags, language, translation, text
      const language = data.indexOf(0, split + 3);
      const translated = language === -1 ? -1 : data.indexOf(0, language + 1);
      if (translated !== -1) {
        found[latin1.decode(data.subarray(0, split))] = new TextDecoder('utf-8').decode(data.subarray(translated + 1));
      }
    }
    if (type === 'IEND') break;
    at += 12 + length;
  }
  return found;
}

// A1111's sampler names -> our scheduler node types
const SAMPLERS = {
  DDIM: 'DDIMScheduler', DDPM: 'DDPMScheduler', Euler: 'EulerDiscreteScheduler', 'Euler a': 'EulerAncestralDiscreteScheduler',
  'DPM++ 2M': 'DPMSolverMultistepScheduler', UniPC: 'UniPCMultistepScheduler', LCM: 'LCMScheduler',
  'DPM++ 2M SDE': 'DPMSolverMultistepScheduler', // with its SDE algorithm (comfy.js's SAMPLER_SETTINGS)
  Heun: 'HeunDiscreteScheduler', LMS: 'LMSDiscreteScheduler', DPM2: 'KDPM2DiscreteScheduler',
  'DPM2 a': 'KDPM2AncestralDiscreteScheduler',
};
// A1111's Latent hires upscalers -> how the ScaleLatents node enlarges the latents
const LATENT_UPSCALERS = {
  Latent: 'bilinear', 'Latent (antialiased)': 'bilinear-antialiased', 'Latent (bicubic)': 'bicubic',
  'Latent (bicubic antialiased)': 'bicubic-antialiased', 'Latent (nearest)': 'nearest',
  'Latent (nearest-exact)': 'nearest-exact', 'Latent (area)': 'area',
};
// A1111's fields that change the image and are not carried over -> how the notice names them
const UNTAKEN = {
  'Hires prompt': () => "the hires pass's own prompt (it takes the first pass's)",
  'Hires negative prompt': () => "the hires pass's own negative prompt",
  'Hires sampler': (value) => `the hires pass's own sampler '${value}'`,
  'Hires CFG Scale': (value) => `the hires pass's own CFG scale ${value}`,
  Refiner: (value) => `SDXL's refiner pass (${value}), which diffblocks does not run`,
  'ADetailer model': (value) => `ADetailer's pass (${value}: faces found and painted again)`,
  Emphasis: (value) => `A1111's '${value}' emphasis (prompt weights are read with its Original one)`,
  'Variation seed': (value) => `A1111's variation seed ${value} (noise of two seeds blended; the seed's alone here)`,
  'Seed resize from': (value) => `A1111's seed resize from ${value} (noise drawn at that size, then cut)`,
};
// one "Key: value" of the parameters line; a value with a comma in it is quoted (A1111's own pattern)
const PARAM = /\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)/g;

/** {prompt, negative, fields} of A1111's parameters text, read as A1111 reads it. */
export function parseParameters(text) {
  const lines = text.trim().split('\n');
  let last = lines.pop();
  const fields = {};
  const found = [...last.matchAll(PARAM)];
  if (found.length < 3) {
    lines.push(last);
    last = '';
  } else {
    for (const [, key, value] of found) fields[key.trim()] = value.trim().replace(/^"|"$/g, '');
  }
  const prompt = [];
  const negative = [];
  let inNegative = false;
  for (let line of lines) {
    if (line.startsWith('Negative prompt:')) {
      inNegative = true;
      line = line.slice('Negative prompt:'.length).trim();
    }
    (inNegative ? negative : prompt).push(line);
  }
  return { prompt: prompt.join('\n').trim(), negative: inNegative ? negative.join('\n').trim() : null, fields };
}

const HIRES_STRENGTH = 0.5; // the hires pass's denoising strength when A1111's parameters leave it out (as the CLI)
// an extra network in an A1111 prompt: <lora:NAME:TE:UNET> (or te=, unet=), <hypernet:NAME:W>, ...
const EXTRA_NETWORK = /<(\w+):([^>]+)>/g;

/** {prompt (without its extra networks, as A1111 encodes it), loras ({name, scale, textEncoderScale}), others
 * (the other extra networks, as "kind name")} of an A1111 prompt. */
export function extraNetworks(prompt) {
  const loras = [];
  const others = [];
  for (const [, kind, args] of prompt.matchAll(EXTRA_NETWORK)) {
    const [name, ...rest] = args.split(':');
    if (!['lora', 'lyco'].includes(kind.toLowerCase())) {
      others.push(`${kind} ${name}`);
      continue;
    }
    const named = Object.fromEntries(rest.filter((arg) => arg.includes('=')).map((arg) => arg.split('=', 2)));
    const positional = rest.filter((arg) => !arg.includes('=')).map(Number);
    const te = Number(named.te ?? positional[0] ?? 1);
    const unet = Number(named.unet ?? positional[1] ?? te);
    if (Number.isFinite(te) && Number.isFinite(unet)) {
      loras.push({ name, scale: unet, textEncoderScale: te === unet ? null : te });
    }
  }
  return { prompt: prompt.replace(EXTRA_NETWORK, ''), loras, others };
}

/** What A1111's parameters set, as comfySettings says it: prompt, negative prompt, steps, seed, size, CFG scale and
 * sampler, and its hires pass (lanczos, then image-to-image at its denoising strength and hires steps); the
 * checkpoint is A1111's name for it ("Model:", the file's name without its suffix), the LoRAs those its prompt names
 * (<lora:NAME:WEIGHT>, taken out of the prompt as A1111 does), the VAE its "VAE:" names (a file name, when not the
 * checkpoint's own). Forge's FLUX.1 images (their Distilled CFG Scale) read as fluxSettings says a FLUX.1 graph:
 * the model a transformer, its "Module N:" files the VAE and text encoders. */
export function parametersSettings(text) {
  const parsed = parseParameters(text);
  const { prompt, loras, others } = extraNetworks(parsed.prompt);
  const { negative, fields } = parsed;
  const number = (key) => (fields[key] !== undefined && !Number.isNaN(Number(fields[key])) ? Number(fields[key]) : null);
  const size = /^(\d+)x(\d+)$/.exec(fields.Size || '');
  // A1111 1.9's Schedule type, or the older sampler names that end with it ("DPM++ 2M Karras")
  const named = /^(.*) (Karras|Exponential)$/.exec(fields.Sampler || ''); // (Beta came after such names)
  const sampler = named ? named[1] : fields.Sampler;
  const settings = {
    prompt, negative, steps: number('Steps'), seed: number('Seed'), cfg: number('CFG scale'),
    width: size && Number(size[1]), height: size && Number(size[2]), scheduler: SAMPLERS[sampler],
    clipSkip: number('Clip skip'),
    // what the model was set to predict, as diffblocks run writes it (--prediction-type, --zero-snr)
    sampling: samplingOf(fields['Prediction type'] || null, fields['Zero SNR'] === 'True', SAMPLERS[sampler],
      named ? named[2] : fields['Schedule type'], sampler),
  };
  if (fields.freeu_enabled === 'True') { // Forge's FreeU (its FreeU_V2; diffblocks run says freeu_version 1)
    const freeu = freeuOf({ b1: number('freeu_b1'), b2: number('freeu_b2'), s1: number('freeu_s1'),
      s2: number('freeu_s2') }, number('freeu_version') ?? 2);
    if (freeu) settings.freeu = freeu;
    else others.push("Forge's FreeU (its factors are not numbers)");
  }
  const unknownSampler = samplerLeftOut(sampler, settings);
  if (unknownSampler && !('Distilled CFG Scale' in fields)) others.push(unknownSampler);
  for (const [key, what] of Object.entries(UNTAKEN)) if (fields[key]) others.push(what(fields[key]));
  const upscaler = fields['Hires upscaler'];
  if (number('Hires upscale')) { // enlarged by lanczos, or as latents, as diffblocks run --from-image does
    settings.hires = { scale: number('Hires upscale'), strength: number('Denoising strength') ?? HIRES_STRENGTH,
      steps: number('Hires steps') || null, latent: LATENT_UPSCALERS[upscaler] || null }; // 0: the first pass's
    const flux = number('Distilled CFG Scale') !== null; // FLUX.1's latents are not enlarged here
    if (upscaler && (flux || !LATENT_UPSCALERS[upscaler]) && !/^(lanczos|none)$/i.test(upscaler)) {
      others.push(`the ${upscaler} upscaler (lanczos instead)`);
    }
  }
  const { control, ipAdapter, leftOut } = controlNetUnits(fields);
  if (number('Distilled CFG Scale') !== null) { // Forge's FLUX.1: its guidance, and CFG above 1 is true CFG
    const trueCfg = settings.cfg !== null && settings.cfg > 1;
    const modules = Object.keys(fields).filter((key) => /^Module \d+$/.test(key)).sort().map((key) => fields[key]);
    return { settings: { ...settings, guidance: number('Distilled CFG Scale'), scheduler: null, sampling: null,
      cfg: trueCfg ? settings.cfg : null, negative: trueCfg ? negative : null }, family: 'flux',
    transformer: fields.Model || null, checkpoint: null, modules, encoders: [], loras, vae: fields.VAE || null,
    control: null, ipAdapter: null, leftOut: [...others, ...leftOut] };
  }
  return { settings, checkpoint: fields.Model || null, loras, vae: fields.VAE || null, control, ipAdapter,
    leftOut: [...others, ...leftOut] };
}

// sd-webui-controlnet's units in A1111's parameters: "ControlNet 0", "ControlNet 1", ... ("ControlNet" in its first
// versions), each value a quoted list of "Key: value"; a range, as its first versions' "starting/ending: (0, 1)", in
// parentheses
const CONTROLNET_UNIT = /^ControlNet( \d+)?$/;
const UNIT_PARAM = /\s*([\w /]+):\s*(\([^)]*\)|[^,]*)(?:,|$)/g;
const HASH = /\s*\[[0-9a-f]+\]$/i; // A1111 names a model file with its hash: "control_v11p_sd15_canny [d14c016b]"

/** One ControlNet unit of A1111's parameters as {model (the file's stem), module (its preprocessor), weight, start,
 * end, hires (its "Hr Option": "Both", the default, "Low res only" or "High res only")}. */
function unitOf(text) {
  const values = {};
  for (const [, key, value] of text.matchAll(UNIT_PARAM)) values[key.trim().toLowerCase()] = value.trim();
  const number = (value, otherwise) => (Number.isFinite(Number(value)) && value !== '' ? Number(value) : otherwise);
  const range = (values['starting/ending'] || '').replace(/[()]/g, '').split(',');
  return {
    model: (values.model || '').replace(HASH, ''), module: values.module ?? values.preprocessor ?? 'none',
    weight: number(values.weight, 1), start: number(values['guidance start'] ?? range[0], 0),
    end: number(values['guidance end'] ?? range[1], 1), hires: values['hr option'] || 'Both',
  };
}

// sd-webui-controlnet's IP-Adapter preprocessors -> the CLIP vision encoder each runs (its size); its FaceID ones
// need InsightFace, which diffblocks does not run
const IP_ADAPTER_ENCODERS = [[/clip_sdxl$|clip_g$|bigg/i, 'ViT-bigG/14'], [/clip_sd15|clip_h$|vith/i, 'ViT-H/14']];

/** {control ({name, strength, start, end, hires (whether it acts on the hires pass too)}: the first ControlNet unit
 * A1111's parameters name, with its image to upload; or null), ipAdapter ({name, encoderSize (the CLIP vision
 * encoder its preprocessor runs: 'ViT-H/14', 'ViT-bigG/14'), weight, start, end}: the first IP-Adapter unit, which
 * sd-webui-controlnet runs as a ControlNet; or null), leftOut (the ControlNet's preprocessor, which the control image
 * is taken as the output of; the units after the first of each; FaceID units)}. */
export function controlNetUnits(fields) {
  const units = Object.keys(fields).filter((key) => CONTROLNET_UNIT.test(key))
    .sort((a, b) => Number(a.split(' ')[1] || 0) - Number(b.split(' ')[1] || 0))
    .map((key) => unitOf(fields[key])).filter(({ model }) => model && model.toLowerCase() !== 'none');
  const isAdapter = ({ module }) => /^ip-adapter/i.test(module);
  const faceId = ({ module }) => /face_?id/i.test(module);
  const leftOut = units.filter((unit) => isAdapter(unit) && faceId(unit))
    .map(({ model, module }) => `IP-Adapter unit '${model}' (its ${module} needs InsightFace)`);
  const adapters = units.filter((unit) => isAdapter(unit) && !faceId(unit));
  if (adapters.length > 1) leftOut.push(`${adapters.length - 1} more IP-Adapter unit${adapters.length > 2 ? 's' : ''}`);
  const ipAdapter = adapters.length ? { name: adapters[0].model, encoder: null, weight: adapters[0].weight,
    start: adapters[0].start, end: adapters[0].end, image: null, where: "A1111's IP-Adapter input",
    encoderSize: (IP_ADAPTER_ENCODERS.find(([pattern]) => pattern.test(adapters[0].module)) || [])[1] || null } : null;
  if (ipAdapter && (ipAdapter.start > 0 || ipAdapter.end < 1)) {
    leftOut.push("the IP-Adapter's start and end (it acts on every step)");
  }
  const controls = units.filter((unit) => !isAdapter(unit));
  if (!controls.length) return { control: null, ipAdapter, leftOut };
  const [{ model, module, weight, start, end, hires }, ...more] = controls;
  if (module.toLowerCase() !== 'none') leftOut.unshift(`the ControlNet's preprocessor '${module}' (upload what it made)`);
  if (more.length) leftOut.push(`${more.length} more ControlNet unit${more.length > 1 ? 's' : ''}`);
  if (/^high res only$/i.test(hires)) leftOut.push("the ControlNet's 'High res only' (it acts on both passes)");
  return { control: { name: model, strength: weight, start, end, image: null, where: "A1111's ControlNet input",
    hires: !/^low res only$/i.test(hires) }, ipAdapter, leftOut };
}

/** {document, notice} for what another tool's graph or parameters set (``from``: "ComfyUI's" or "A1111's"): a
 * text-to-image graph on the checkpoint they name, with their LoRAs, embeddings, VAE, ControlNet or IP-Adapter, when
 * the server's model folders have them, else on ``repo``; ``notice`` says what did not carry over (that checkpoint,
 * a LoRA, other nodes) and what to do (upload the image a ControlNet or IP-Adapter takes), or is null. */
async function imported(read, repo, from) {
  const { settings, checkpoint, loras, vae, control, ipAdapter, inpaint, leftOut } = read;
  const notes = [];
  if (read.family === 'flux') { // on the server's FLUX.1 folder; without one, as a checkpoint the server lacks
    const flux = await importedFlux(read, from);
    if (flux) return flux;
    notes.push(`${from} ${from === "A1111's" ? 'image' : 'graph'} is FLUX.1's, and the server has no FLUX.1 model `
      + 'folder (a FluxPipeline folder in the diffusers folder of serve --models-dir: its text encoders, tokenizers '
      + `and scheduler): the graph loads ${repo}`);
  }
  const found = await findCheckpoint(read.family === 'flux' ? null : checkpoint).catch(() => null);
  if (checkpoint && !found && read.family !== 'flux') {
    notes.push(`${from} checkpoint '${checkpoint}' is not among the server's checkpoints (serve --models-dir): `
      + `the graph loads ${repo}`);
  } else if (found && !found.family) {
    notes.push(`${from} checkpoint is ${found.name} in the server's checkpoints, which the graph does not load: `
      + `${found.problem}; it loads ${repo}`);
  }
  const model = found && found.family ? { checkpoint: found.name, family: found.family, loras: [] }
    : { repo, loras: [] }; // LoRAs go with the checkpoint they were made for
  if (model.checkpoint) await findLoras(loras, model, notes, found.family);
  else loras.forEach(({ name }) => notes.push(`LoRA '${name}' left out`));
  if (vae) { // like the LoRAs, with the checkpoint only: it decodes that model's latents
    model.vae = model.checkpoint ? await findModel('vae', vae).catch(() => null) : null;
    if (!model.vae) notes.push(`VAE '${vae}' ${model.checkpoint ? "is not among the server's VAEs" : 'left out'}`);
  }
  if (model.checkpoint) { // adapters and embeddings too go with the model they were made for
    await findAdapters(control, ipAdapter, model, notes, found.family);
    const named = embeddingsIn(settings, await modelNames('embeddings').catch(() => []));
    Object.assign(settings, named.settings);
    model.embeddings = [];
    for (const embedding of named.embeddings) { // one made for another family's text encoders would not fit
      const other = await otherFamily('embeddings', embedding.name, found.family);
      if (!other) model.embeddings.push(embedding);
      else notes.push(`embedding '${embedding.name}' left out: it is for ${other} models`);
    }
    named.missing.forEach((name) => notes.push(`embedding '${name}' is not among the server's embeddings`));
  } else {
    if (control) notes.push(`ControlNet '${control.name}' left out`);
    if (ipAdapter) notes.push(`IP-Adapter '${ipAdapter.name}' left out`);
  }
  if (inpaint) { // on any model: the images are all it takes
    model.inpaint = inpaint;
    notes.push(inpaintUploads(inpaint));
  }
  if (leftOut.length) notes.push(`left out: ${leftOut.join(', ')}`);
  return {
    document: text2imageGraph(model, settings),
    notice: notes.length ? notes.join('; ') : null,
  };
}

// ComfyUI's name for an embedding in a prompt: embedding:NAME (with or without its file's suffix)
const COMFY_EMBEDDING = /embedding:([^\s,()[\]]+)/gi;
const escaped = (text) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'); // as a regular expression's literal text

/** {settings (the prompts with ComfyUI's embedding:NAME as the word NAME, or left out when the server lacks it),
 * embeddings ([{name}]: the server's embedding files the prompts use, as ComfyUI's embedding:NAME or as A1111's
 * bare word, the file's stem), missing (the names ComfyUI's prompts give that the server lacks)} for the server's
 * embedding files `names`. */
function embeddingsIn(settings, names) {
  const byStem = new Map();
  names.forEach((name) => byStem.set(stemOf(name), byStem.has(stemOf(name)) ? null : name)); // a stem twice: neither
  const used = new Set();
  const missing = [];
  const rewrite = (text) => (typeof text !== 'string' ? text : text.replace(COMFY_EMBEDDING, (_, wanted) => {
    const token = stemOf(wanted);
    if (byStem.get(token)) return token;
    missing.push(wanted);
    return '';
  }));
  const prompts = { prompt: rewrite(settings.prompt), negative: rewrite(settings.negative) };
  for (const [token, name] of byStem) {
    const word = new RegExp(`(^|[^\\w])${escaped(token)}(?![\\w])`);
    if (name && (word.test(prompts.prompt) || word.test(prompts.negative ?? ''))) used.add(name);
  }
  return { settings: prompts, embeddings: [...used].sort().map((name) => ({ name })), missing };
}

/** {document, notice} for a saved document (notice null), or ComfyUI's graph in either of its formats. */
function documentOf(json, repo) {
  if (isComfyPrompt(json)) return imported(comfyRead(json), repo, "ComfyUI's");
  if (isComfyEditorGraph(json)) return imported(comfyRead(editorPrompt(json)), repo, "ComfyUI's");
  return { document: json, notice: null };
}

/** What ComfyUI's graph `prompt` (API format) sets: a FLUX.1 graph's (comfyFlux.js) or another's (comfy.js). */
const comfyRead = (prompt) => (isFluxGraph(prompt) ? fluxSettings(prompt) : comfySettings(prompt));

export const isImageFile = (file) => file.type.startsWith('image/') || /\.(png|jpe?g|webp)$/i.test(file.name);

/** {document, notice} for the workflow in a dropped or chosen file: a saved .json, ComfyUI's, or a PNG the server,
 * ComfyUI, A1111 or `diffblocks run` made (``repo``: the model an imported graph loads when the server lacks the
 * checkpoint it names); null for an image that holds none. */
export async function workflowIn(file, repo = 'embedded') {
  if (file.type === 'image/png' || /\.png$/i.test(file.name)) {
    const chunks = pngText(await file.arrayBuffer());
    const workflow = chunks.workflow && JSON.parse(chunks.workflow);
    if (workflow && !Array.isArray(workflow.nodes)) return { document: workflow, notice: null }; // ours
    if (chunks.prompt) return documentOf(JSON.parse(chunks.prompt), repo); // ComfyUI's API format
    if (chunks.parameters) return imported(parametersSettings(chunks.parameters), repo, "A1111's");
    return null;
  }
  if (isImageFile(file)) return null;
  return documentOf(JSON.parse(await file.text()), repo);
}

/** As workflowIn, but an image without a workflow is an error (the Load button loads workflows only). */
export async function readWorkflowFile(file, repo = 'embedded') {
  const found = await workflowIn(file, repo);
  if (found === null) {
    throw new Error('this image holds no workflow (only images a diffblocks server, ComfyUI, A1111 or diffblocks run '
      + 'made do)');
  }
  return found;
}
