// ComfyUI's FLUX.1 graphs read as ours. They load the transformer alone (UNETLoader: a file of its
// diffusion_models folder; or CheckpointLoaderSimple, an all-in-one file), the text encoders (DualCLIPLoader) and the
// VAE (VAELoader: ae.safetensors) from files, condition on the distilled guidance (FluxGuidance, or
// CLIPTextEncodeFlux) and sample with a KSampler at CFG 1, or with SamplerCustomAdvanced (RandomNoise, BasicGuider or
// CFGGuider, KSamplerSelect, BasicScheduler) from an EmptySD3LatentImage. Such a graph becomes the FLUX.1
// text-to-image preset (its ControlNet preset, with a ControlNet; Kontext's, with a ReferenceLatent) with the same
// prompt, guidance, seed, steps and size.
import {
  CONDITIONING_PASSES, CONTROLNET_APPLY, DECODERS, asText, controlOf, enlarging, imageFile, inpaintOf, tiledDecode,
} from './comfy.js';

// nodes only FLUX.1 graphs hold
const FLUX_NODES = new Set(['FluxGuidance', 'CLIPTextEncodeFlux', 'ModelSamplingFlux']);
const SAMPLERS = new Set(['KSampler', 'SamplerCustomAdvanced', 'SamplerCustom']);
const EMPTY_LATENTS = new Set(['EmptySD3LatentImage', 'EmptyLatentImage']);
const LORA_LOADERS = new Set(['LoraLoader', 'LoraLoaderModelOnly']);
// nodes whose settings carry over, or that carry nothing (outputs, layout, the loaders the folder stands in for)
const CARRIED = new Set([...FLUX_NODES, ...SAMPLERS, ...EMPTY_LATENTS, ...LORA_LOADERS,
  ...Object.keys(CONDITIONING_PASSES), 'ControlNetLoader', 'LoadImage', 'LoadImageMask', 'ReferenceLatent',
  'FluxKontextImageScale', 'VAEEncode', 'SetLatentNoiseMask', 'LatentUpscaleBy', 'LatentUpscale', 'ImageScaleBy',
  'ImageScale', 'ImageUpscaleWithModel', 'UpscaleModelLoader', 'UNETLoader',
  'CheckpointLoaderSimple', 'DualCLIPLoader', 'VAELoader', 'CLIPTextEncode', 'ConditioningZeroOut', 'RandomNoise',
  'BasicGuider', 'CFGGuider', 'KSamplerSelect', 'BasicScheduler', ...DECODERS, 'SaveImage', 'PreviewImage', 'Reroute',
  'PrimitiveNode', 'Note', 'MarkdownNote']);
// ModelSamplingFlux's shifts when they are FLUX.1-dev's scheduler's (its dynamic shifting, which the folder's has)
const FLUX_SHIFTS = { max_shift: 1.15, base_shift: 0.5 };

/** Whether ComfyUI's graph `prompt` (API format) is a FLUX.1 one: a node only FLUX.1 graphs hold, or a
 * DualCLIPLoader of type "flux". */
export const isFluxGraph = (prompt) => Object.values(prompt).some((node) => node && (FLUX_NODES.has(node.class_type)
  || (node.class_type === 'DualCLIPLoader' && node.inputs?.type === 'flux')));

/** What ComfyUI's FLUX.1 text-to-image graph `prompt` sets, as comfySettings says it, with family 'flux':
 * {settings ({prompt, prompt2 (T5's, when CLIPTextEncodeFlux gives it its own), negative (with true CFG only),
 * guidance, seed, steps, cfg (above 1 only: true CFG), width, height}), transformer (the UNETLoader's file, or
 * null), checkpoint (an all-in-one file's name, or null), encoders (the DualCLIPLoader's files), loras, vae,
 * leftOut}; throws, saying why, for a graph that is not a text-to-image one. */
export function fluxSettings(prompt) {
  const source = (link) => (Array.isArray(link) ? prompt[String(link[0])] : null);
  const number = (value) => (typeof value === 'number' ? value : null);
  const { sampler, second } = samplersOf(prompt, source);
  const { inputs } = sampler;
  const leftOut = [];
  const { seed, steps, cfg, samplerName, denoise, conditioning, negative, model, sigmas } = sampled(sampler, source,
    number);

  const text = textOf(conditioning, source, number);
  const { controls, references } = text;
  const kontext = references.length ? kontextOf(references[references.length - 1], source) : null;
  const latent = source(inputs.latent_image);
  const empty = latent && EMPTY_LATENTS.has(latent.class_type);
  const inpaint = inpaintOf(latent, source); // Fill's (InpaintModelConditioning), or inpainting with the dev model
  if (!empty && !inpaint && !(kontext && latent?.class_type === 'VAEEncode')) { // Kontext's: the image's size
    throw new Error('this ComfyUI FLUX.1 graph does not start from an empty latent (EmptySD3LatentImage): only '
      + 'text-to-image graphs (and inpainting ones, and Kontext edits) can be read');
  }
  if (denoise !== null && denoise < 1 && !inpaint) {
    throw new Error(`this ComfyUI FLUX.1 graph denoises ${denoise} of its latent`);
  }
  if (text.prompt === null) {
    throw new Error("this ComfyUI FLUX.1 graph's prompt is not a CLIPTextEncode or CLIPTextEncodeFlux with its text");
  }
  const trueCfg = cfg !== null && cfg > 1; // ComfyUI runs the negative prompt only then
  const settings = {
    prompt: text.prompt, prompt2: text.prompt2, guidance: text.guidance, seed, steps, cfg: trueCfg ? cfg : null,
    negative: trueCfg ? textOf(negative, source, number).prompt : null,
    width: empty ? number(latent.inputs.width) : null, height: empty ? number(latent.inputs.height) : null,
    strength: inpaint && denoise !== null && denoise < 1 ? denoise : null,
    tiledVae: tiledDecode(prompt) || null,
  };
  if (samplerName && samplerName !== 'euler') {
    leftOut.push(`the sampler '${samplerName}' (FLUX.1 samples with Euler here)`);
  }
  const scheduler = asText(sigmas ? sigmas.inputs.scheduler : inputs.scheduler);
  if (scheduler && scheduler !== 'simple') leftOut.push(`the scheduler '${scheduler}' (FLUX.1's own sigmas here)`);

  const loras = [];
  const loaders = ['UNETLoader', 'CheckpointLoaderSimple'];
  let node = source(model); // through the nodes that patch the model on its way: LoRAs, ModelSamplingFlux
  for (let hops = 0; node && !loaders.includes(node.class_type) && hops < 100; hops += 1) {
    const { lora_name: name, strength_model: scale, strength_clip: clip } = node.inputs;
    if (LORA_LOADERS.has(node.class_type) && typeof name === 'string') { // as comfySettings reads them
      const textEncoderScale = node.class_type === 'LoraLoaderModelOnly' ? 0 : number(clip);
      loras.unshift({ name, scale: number(scale) ?? 1, textEncoderScale: clip === scale ? null : textEncoderScale });
    } else if (node.class_type === 'ModelSamplingFlux' && Object.entries(FLUX_SHIFTS).some(
      ([key, value]) => number(node.inputs[key]) !== null && node.inputs[key] !== value)) {
      leftOut.push("ModelSamplingFlux's shifts (the scheduler's own here)");
    }
    node = source(node.inputs.model);
  }
  const unet = node?.class_type === 'UNETLoader' ? asText(node.inputs.unet_name) : null;
  const checkpoint = node?.class_type === 'CheckpointLoaderSimple' ? asText(node.inputs.ckpt_name) : null;
  const encoders = Object.values(prompt).filter((n) => n && n.class_type === 'DualCLIPLoader')
    .flatMap((n) => [asText(n.inputs.clip_name1), asText(n.inputs.clip_name2)]).filter(Boolean);
  const vaes = Object.values(prompt).filter((n) => n && DECODERS.has(n.class_type))
    .map((n) => source(n.inputs.vae)).filter((n) => n && n.class_type === 'VAELoader');
  leftOut.unshift(...[...new Set(Object.values(prompt).map((n) => n && n.class_type))]
    .filter((type) => type && !CARRIED.has(type)).sort());
  if (controls.length > 1) leftOut.push(`${controls.length - 1} more ControlNet${controls.length > 2 ? 's' : ''}`);
  if (second) { // a hires fix: the second sampler paints the first one's result again, enlarged on its way
    const { scale, how } = enlarging(second, sampler, source, settings.width);
    const again = sampled(second, source, number);
    settings.hires = { scale, strength: again.denoise ?? 1, steps: again.steps, seed: again.seed };
    if (how) leftOut.push(`${how} (lanczos instead)`);
  }
  if (references.length > 1) {
    const more = references.length - 1;
    leftOut.push(`${more} more reference image${more > 1 ? 's' : ''} (Kontext edits one)`);
  }
  return { settings, family: 'flux', transformer: unet, checkpoint, encoders, loras, kontext, inpaint,
    vae: vaes.length ? asText(vaes[0].inputs.vae_name) : null,
    control: controls.length ? controlOf(controls[controls.length - 1], source, number) : null, ipAdapter: null,
    leftOut };
}

/** {sampler (the one from an empty latent, when there are two), second (the one painting its result again,
 * enlarged: a hires fix; or null)} of the graph; throws for any other number of samplers. */
function samplersOf(prompt, source) {
  const samplers = Object.values(prompt).filter((node) => node && SAMPLERS.has(node.class_type));
  if (samplers.length === 2) {
    const first = samplers.find((node) => EMPTY_LATENTS.has(source(node.inputs.latent_image)?.class_type));
    const second = samplers.find((node) => node !== first);
    if (first && enlarging(second, first, source, 1)?.scale) return { sampler: first, second };
  }
  if (samplers.length !== 1) {
    throw new Error(`this ComfyUI FLUX.1 graph has ${samplers.length} samplers: only a text-to-image graph with one `
      + '(KSampler, SamplerCustomAdvanced or SamplerCustom; two for a hires fix) can be read');
  }
  return { sampler: samplers[0], second: null };
}

/** A sampler's settings: a KSampler's own; SamplerCustomAdvanced's on the nodes it takes (its noise, guider,
 * sampler and sigmas: RandomNoise, BasicGuider or CFGGuider, KSamplerSelect, BasicScheduler). */
function sampled(sampler, source, number) {
  const { inputs } = sampler;
  const guider = source(inputs.guider);
  const sigmas = source(inputs.sigmas);
  const custom = sampler.class_type !== 'KSampler';
  return {
    seed: custom ? number(source(inputs.noise)?.inputs.noise_seed ?? inputs.noise_seed) : number(inputs.seed),
    steps: number(custom ? sigmas?.inputs.steps : inputs.steps),
    cfg: number(guider ? guider.inputs.cfg ?? 1 : inputs.cfg),
    samplerName: asText(custom ? source(inputs.sampler)?.inputs.sampler_name : inputs.sampler_name),
    denoise: number(custom ? sigmas?.inputs.denoise : inputs.denoise),
    conditioning: guider ? guider.inputs.conditioning ?? guider.inputs.positive : inputs.positive,
    negative: guider ? guider.inputs.negative : inputs.negative,
    model: guider ? guider.inputs.model : inputs.model,
    sigmas: custom ? sigmas : null,
  };
}

/** {image (the LoadImage's file in ComfyUI's input folder, or null), from (the node type the image comes from
 * otherwise), autoResize (whether FluxKontextImageScale takes it to a training resolution)} of Kontext's image:
 * the pixels a ReferenceLatent node's latent is encoded from. */
function kontextOf(reference, source) {
  let image = source(source(reference.inputs.latent)?.inputs.pixels);
  const autoResize = image?.class_type === 'FluxKontextImageScale';
  if (autoResize) image = source(image.inputs.image);
  const file = imageFile(image);
  return { image: file, from: file ? null : image?.class_type ?? null, autoResize };
}

/** {prompt (CLIP's), prompt2 (T5's, when it differs), guidance, controls (the ControlNet apply nodes on the way,
 * the sampler's side first), references (Kontext's ReferenceLatent nodes)} of the conditioning `link`: a
 * CLIPTextEncode (through FluxGuidance, which sets the guidance, ControlNet apply nodes and ReferenceLatent nodes)
 * or a CLIPTextEncodeFlux (its clip_l and t5xxl texts and guidance). */
function textOf(link, source, number) {
  let node = source(link);
  let guidance = null;
  const controls = [];
  const references = [];
  for (let hops = 0; node && hops < 100; hops += 1) {
    if (node.class_type === 'FluxGuidance') {
      guidance = guidance ?? number(node.inputs.guidance);
      link = node.inputs.conditioning;
    } else if (node.class_type === 'ReferenceLatent') {
      references.push(node);
      link = node.inputs.conditioning;
    } else if (CONDITIONING_PASSES[node.class_type]) {
      const negative = CONDITIONING_PASSES[node.class_type] === 'positive' && link[1] === 1; // its second output
      if (!negative && CONTROLNET_APPLY[node.class_type]) controls.push(node);
      link = node.inputs[negative ? 'negative' : CONDITIONING_PASSES[node.class_type]];
    } else {
      break;
    }
    node = source(link);
  }
  if (node && node.class_type === 'CLIPTextEncodeFlux') {
    const clip = asText(node.inputs.clip_l);
    const t5 = asText(node.inputs.t5xxl);
    return { prompt: clip || t5, prompt2: t5 && clip && t5 !== clip ? t5 : null,
      guidance: guidance ?? number(node.inputs.guidance), controls, references };
  }
  return { prompt: node && node.class_type === 'CLIPTextEncode' ? asText(node.inputs.text) : null, prompt2: null,
    guidance, controls, references };
}
