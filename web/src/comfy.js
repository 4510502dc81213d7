// ComfyUI's graphs read as ours. Its images and "Save (API format)" files hold the graph as {id: {class_type,
// inputs}}, an input a value or [source id, output index]; its editor's own files (what "Save" writes, and what
// workflows are shared as) hold {nodes: [{id, type, inputs, widgets_values}], links}, read here into the former. A
// text-to-image graph of its core nodes (a checkpoint loader, two CLIPTextEncode, EmptyLatentImage, KSampler,
// VAEDecode) becomes the text-to-image preset with the same prompt, negative prompt, seed, steps, CFG, sampler and
// size, on the checkpoint it names when the server's model folders have it: the settings carry over, the pixels do
// not (ComfyUI's samplers draw their noise and take their steps their own way).

// ComfyUI's sampler_name -> our scheduler node types (its "scheduler", the sigma spacing, carried over when karras,
// exponential or beta, on the node types that have them)
const SAMPLERS = {
  euler: 'EulerDiscreteScheduler', euler_ancestral: 'EulerAncestralDiscreteScheduler', ddim: 'DDIMScheduler',
  ddpm: 'DDPMScheduler', dpmpp_2m: 'DPMSolverMultistepScheduler', uni_pc: 'UniPCMultistepScheduler', lcm: 'LCMScheduler',
  dpmpp_2m_sde: 'DPMSolverMultistepScheduler', dpmpp_2m_sde_gpu: 'DPMSolverMultistepScheduler',
  heun: 'HeunDiscreteScheduler', lms: 'LMSDiscreteScheduler', dpm_2: 'KDPM2DiscreteScheduler',
  dpm_2_ancestral: 'KDPM2AncestralDiscreteScheduler',
};
// samplers that are a scheduler node type with settings of their own (ComfyUI's and A1111's names)
export const SAMPLER_SETTINGS = { dpmpp_2m_sde: { algorithm_type: 'sde-dpmsolver++' },
  dpmpp_2m_sde_gpu: { algorithm_type: 'sde-dpmsolver++' }, 'DPM++ 2M SDE': { algorithm_type: 'sde-dpmsolver++' } };

// ModelSamplingDiscrete's sampling -> what the model predicts (the scheduler's prediction_type)
const PREDICTIONS = { eps: 'epsilon', v_prediction: 'v_prediction' };

// A1111's schedule types (ComfyUI's scheduler widget, its names) -> the change to the scheduler node types that have
// it: their sigma spacing, or trailing timesteps (SGM Uniform and Simple: Lightning / Turbo models' sampling)
const SPACINGS = { karras: { use_karras_sigmas: true }, exponential: { use_exponential_sigmas: true },
  beta: { use_beta_sigmas: true }, sgm_uniform: { timestep_spacing: 'trailing' },
  simple: { timestep_spacing: 'trailing' } };
const SPACED = new Set(['EulerDiscreteScheduler', 'DPMSolverMultistepScheduler', 'UniPCMultistepScheduler',
  'HeunDiscreteScheduler', 'LMSDiscreteScheduler', 'KDPM2DiscreteScheduler', 'KDPM2AncestralDiscreteScheduler']);

/** The changes to the model's scheduler config ({prediction_type, rescale_betas_zero_snr, use_karras_sigmas, ...})
 * for what a model is set to predict (`prediction`: 'epsilon' or 'v_prediction', or null), with zero terminal SNR
 * or not, the `spacing` of the noise levels ('karras', 'exponential', 'sgm_uniform', 'SGM Uniform', any case;
 * taken when the scheduler node type `type` has it) and the settings of the `sampler` named (SAMPLER_SETTINGS);
 * null when none is set. */
export function samplingOf(prediction, zeroSnr, type = null, spacing = null, sampler = null) {
  const changes = {
    ...(SAMPLER_SETTINGS[sampler] || {}),
    ...(prediction ? { prediction_type: prediction } : {}), ...(zeroSnr ? { rescale_betas_zero_snr: true } : {}),
  };
  const change = SPACED.has(type) && typeof spacing === 'string'
    ? SPACINGS[spacing.toLowerCase().replace(/[ -]/g, '_')] : null;
  Object.assign(changes, change || {});
  return Object.keys(changes).length ? changes : null;
}

/** The notice for a sampler `name` that no scheduler node type is, for `settings` (with their sampling, Euler
 * takes its place: a scheduler node carries the sampling), or null for one that is. */
export function samplerLeftOut(name, settings) {
  if (!name || settings.scheduler) return null;
  return `the sampler '${name}' (${settings.sampling ? 'Euler' : "the model's own scheduler"} here)`;
}

// the widgets of the nodes read here, in the order the editor format lists their values
const SD_WIDGETS = {
  KSampler: ['seed', 'control_after_generate', 'steps', 'cfg', 'sampler_name', 'scheduler', 'denoise'],
  KSamplerAdvanced: ['add_noise', 'noise_seed', 'control_after_generate', 'steps', 'cfg', 'sampler_name', 'scheduler',
    'start_at_step', 'end_at_step', 'return_with_leftover_noise'],
  CheckpointLoaderSimple: ['ckpt_name'],
  VAELoader: ['vae_name'],
  LoraLoader: ['lora_name', 'strength_model', 'strength_clip'],
  LoraLoaderModelOnly: ['lora_name', 'strength_model'],
  FreeU: ['b1', 'b2', 's1', 's2'],
  FreeU_V2: ['b1', 'b2', 's1', 's2'],
  CLIPTextEncode: ['text'],
  EmptyLatentImage: ['width', 'height', 'batch_size'],
  ControlNetLoader: ['control_net_name'],
  ControlNetApply: ['strength'],
  ControlNetApplyAdvanced: ['strength', 'start_percent', 'end_percent'],
  ControlNetApplySD3: ['strength', 'start_percent', 'end_percent'],
  LoadImage: ['image', 'upload'],
  CLIPVisionLoader: ['clip_name'],
  IPAdapterModelLoader: ['ipadapter_file'], // ComfyUI_IPAdapter_plus's nodes, as most graphs with an IP-Adapter have
  IPAdapter: ['weight', 'start_at', 'end_at', 'weight_type'],
  IPAdapterAdvanced: ['weight', 'weight_type', 'combine_embeds', 'start_at', 'end_at', 'embeds_scaling'],
  LatentUpscale: ['upscale_method', 'width', 'height', 'crop'],
  LatentUpscaleBy: ['upscale_method', 'scale_by'],
  ImageScale: ['upscale_method', 'width', 'height', 'crop'],
  ImageScaleBy: ['upscale_method', 'scale_by'],
  UpscaleModelLoader: ['model_name'],
  VAEEncodeForInpaint: ['grow_mask_by'],
  InpaintModelConditioning: ['noise_mask'],
  LoadImageMask: ['image', 'channel', 'upload'],
  ModelSamplingDiscrete: ['sampling', 'zsnr'],
  CLIPSetLastLayer: ['stop_at_clip_layer'],
};
const WIDGETS = {
  ...SD_WIDGETS,
  // FLUX.1's (comfyFlux.js)
  UNETLoader: ['unet_name', 'weight_dtype'],
  DualCLIPLoader: ['clip_name1', 'clip_name2', 'type'],
  FluxGuidance: ['guidance'],
  CLIPTextEncodeFlux: ['clip_l', 't5xxl', 'guidance'],
  ModelSamplingFlux: ['max_shift', 'base_shift', 'width', 'height'],
  EmptySD3LatentImage: ['width', 'height', 'batch_size'],
  RandomNoise: ['noise_seed', 'control_after_generate'],
  KSamplerSelect: ['sampler_name'],
  BasicScheduler: ['scheduler', 'steps', 'denoise'],
  CFGGuider: ['cfg'],
  SamplerCustom: ['add_noise', 'noise_seed', 'control_after_generate', 'cfg'],
};
// the nodes that put a ControlNet on the conditioning on its way to the sampler -> the input it comes through
export const CONTROLNET_APPLY = { ControlNetApply: 'conditioning', ControlNetApplyAdvanced: 'positive',
  ControlNetApplySD3: 'positive' }; // the last, FLUX.1's in ComfyUI's examples (ControlNetApplyAdvanced with a VAE)
// nodes the prompts pass through unchanged for what is read here -> the input the positive one comes through
export const CONDITIONING_PASSES = { ...CONTROLNET_APPLY, InpaintModelConditioning: 'positive' };
// the latents an inpainting graph samples (inpaintOf)
const INPAINT_LATENTS = new Set(['VAEEncodeForInpaint', 'InpaintModelConditioning', 'SetLatentNoiseMask']);
const LORA_LOADERS = new Set(['LoraLoader', 'LoraLoaderModelOnly']);
const IP_ADAPTERS = new Set(['IPAdapter', 'IPAdapterAdvanced']); // they patch the model on its way, as LoRAs do
const FREEU_VERSIONS = { FreeU: 1, FreeU_V2: 2 }; // ComfyUI's FreeU nodes -> our FreeU node's version

/** {b1, b2, s1, s2, version} for FreeU's factors `factors` (ComfyUI's node inputs, or Forge's fields read as
 * numbers), or null when one is not a finite number. */
export function freeuOf(factors, version) {
  const [b1, b2, s1, s2] = ['b1', 'b2', 's1', 's2'].map((key) => factors[key]);
  const finite = [b1, b2, s1, s2].every((value) => typeof value === 'number' && Number.isFinite(value));
  return finite ? { b1, b2, s1, s2, version } : null;
}
// nodes a text-to-image graph may hold besides those that carry nothing over (outputs, layout)
// ComfyUI's decoders: a tiled one is the page's TiledVAE node (its tile size the VAE's own)
export const DECODERS = new Set(['VAEDecode', 'VAEDecodeTiled']);
export const tiledDecode = (prompt) => Object.values(prompt).some((node) => node?.class_type === 'VAEDecodeTiled');
const CARRIED = new Set([...Object.keys(SD_WIDGETS), ...DECODERS, 'VAEEncode', 'ImageUpscaleWithModel', 'SaveImage',
  'SetLatentNoiseMask',
  'PreviewImage', 'Reroute', 'PrimitiveNode', 'Note', 'MarkdownNote']);
const MUTED = new Set([2, 4]); // the editor's "never" and "bypass" modes

export const asText = (value) => (typeof value === 'string' ? value : null);

/** The file a LoadImage node `image` (a source node) loads from ComfyUI's input folder, or null. */
export const imageFile = (image) => (image && image.class_type === 'LoadImage' ? asText(image.inputs.image) : null);

/** Whether `json` is a graph in ComfyUI's API format. */
export const isComfyPrompt = (json) => Boolean(json) && typeof json === 'object' && !Array.isArray(json) &&
  !('nodes' in json) && Object.values(json).some((node) => node && typeof node.class_type === 'string');

/** Whether `json` is a graph in ComfyUI's editor format (LiteGraph's: a list of nodes and one of links). */
export const isComfyEditorGraph = (json) => Boolean(json) && Array.isArray(json.nodes) && Array.isArray(json.links) &&
  json.nodes.every((node) => node && typeof node.type === 'string' && node.id !== undefined);

/** ComfyUI's editor-format graph as its API format: each node's links (through Reroute nodes) and its widgets'
 * values by name (from a PrimitiveNode when a widget became an input wired to one); muted and bypassed nodes left
 * out. Widgets are named for the nodes read here (WIDGETS); other nodes keep their links only. */
export function editorPrompt(graph) {
  const nodes = new Map(graph.nodes.filter((node) => !MUTED.has(node.mode)).map((node) => [String(node.id), node]));
  const links = new Map(graph.links.map((link) => (Array.isArray(link)
    ? [link[0], { from: String(link[1]), slot: link[2] }]
    : [link.id, { from: String(link.origin_id), slot: link.origin_slot }])));
  const origin = (linkId) => { // the node and output slot a link comes from, past any Reroute
    let link = links.get(linkId);
    for (let hops = 0; link && nodes.get(link.from)?.type === 'Reroute' && hops < 100; hops += 1) {
      link = links.get(nodes.get(link.from).inputs?.[0]?.link);
    }
    return link && nodes.has(link.from) ? link : null;
  };
  const prompt = {};
  for (const [id, node] of nodes) {
    if (node.type === 'Reroute' || node.type === 'PrimitiveNode') continue;
    const inputs = {};
    const values = node.widgets_values;
    let names = WIDGETS[node.type] || [];
    if (node.type.startsWith('KSampler') && Array.isArray(values) && values.length === names.length - 1) {
      names = names.filter((name) => name !== 'control_after_generate'); // saved without the seed's control
    }
    names.forEach((name, index) => {
      const value = Array.isArray(values) ? values[index] : values?.[name];
      if (value !== undefined) inputs[name] = value;
    });
    for (const input of node.inputs || []) {
      const link = input.link === null || input.link === undefined ? null : origin(input.link);
      if (!link) continue;
      const source = nodes.get(link.from);
      if (source.type === 'PrimitiveNode') inputs[input.widget?.name || input.name] = source.widgets_values?.[0];
      else inputs[input.name] = [link.from, link.slot];
    }
    prompt[id] = { class_type: node.type, inputs };
  }
  return prompt;
}

/** What ComfyUI's text-to-image graph `prompt` (API format) sets: {settings (as text2imageGraph takes them),
 * checkpoint (the ckpt_name its model comes from, or null), loras (the LoRA loaders on the model's way from it, in
 * order: {name, scale, textEncoderScale}), vae (the vae_name of the VAELoader its VAEDecode takes, or null),
 * control (the ControlNet its positive prompt goes through: see controlOf; or null), ipAdapter (the IP-Adapter on
 * its model's way: see ipAdapterOf; or null), leftOut (the node types that carry nothing over)}; throws, saying why,
 * for a graph that is not a text-to-image one. */
export function comfySettings(prompt) {
  const source = (link) => (Array.isArray(link) ? prompt[String(link[0])] : null);
  const { sampler, refiners, second } = samplerOf(prompt, source);
  const inputs = { ...sampler.inputs, seed: sampler.inputs.seed ?? sampler.inputs.noise_seed };
  const controls = []; // the ControlNets on the positive prompt's way, the sampler's side first
  const textNode = (link, positive = false) => { // the CLIPTextEncode of a conditioning, through the passes
    let node = source(link);
    for (let hops = 0; node && CONDITIONING_PASSES[node.class_type] && hops < 100; hops += 1) {
      if (positive && CONTROLNET_APPLY[node.class_type]) controls.push(node);
      const negative = CONDITIONING_PASSES[node.class_type] === 'positive' && link[1] === 1; // its second output
      link = node.inputs[negative ? 'negative' : CONDITIONING_PASSES[node.class_type]];
      node = source(link);
    }
    return node && node.class_type === 'CLIPTextEncode' ? node : null;
  };
  const text = (link, positive = false) => {
    const node = textNode(link, positive);
    return node ? asText(node.inputs.text) : null;
  };
  const latent = source(inputs.latent_image);
  const inpaint = inpaintOf(latent, source);
  if (!inpaint && (!latent || latent.class_type !== 'EmptyLatentImage')) {
    throw new Error('this ComfyUI graph does not start from an EmptyLatentImage: only text-to-image graphs (and '
      + 'inpainting ones) can be read');
  }
  const prompt_ = text(inputs.positive, true);
  let clip = source(textNode(inputs.positive)?.inputs.clip); // its CLIP: through LoRA loaders, to CLIPSetLastLayer
  for (let hops = 0; clip && clip.class_type !== 'CLIPSetLastLayer' && clip.inputs.clip && hops < 100; hops += 1) {
    clip = source(clip.inputs.clip);
  }
  const stop = clip?.class_type === 'CLIPSetLastLayer' ? clip.inputs.stop_at_clip_layer : null;
  if (prompt_ === null) throw new Error("this ComfyUI graph's positive prompt is not a CLIPTextEncode with its text");
  const number = (value) => (typeof value === 'number' ? value : null);
  const loras = [];
  const adapters = []; // the IP-Adapters on the model's way, the sampler's side first
  let modelSampling = null; // a ModelSamplingDiscrete on the model's way: what the model is set to predict
  let freeu; // the FreeU node on the model's way nearest the sampler (null: one whose factors are not numbers)
  const leftOut = [];
  let model = source(inputs.model); // through the nodes that patch the model on its way (LoRAs, IP-Adapters)
  for (let hops = 0; model && model.class_type !== 'CheckpointLoaderSimple' && hops < 100; hops += 1) {
    if (IP_ADAPTERS.has(model.class_type)) adapters.push(model);
    if (model.class_type === 'ModelSamplingDiscrete' && !modelSampling) modelSampling = model.inputs;
    if (FREEU_VERSIONS[model.class_type] && freeu === undefined) {
      freeu = freeuOf(model.inputs, FREEU_VERSIONS[model.class_type]);
      if (!freeu) leftOut.push(`the ${model.class_type} node (its factors are not numbers)`);
    }
    const { lora_name: name, strength_model: scale, strength_clip: clip } = model.inputs;
    if (LORA_LOADERS.has(model.class_type) && typeof name === 'string') {
      const textEncoderScale = model.class_type === 'LoraLoaderModelOnly' ? 0 : number(clip);
      loras.unshift({ name, scale: number(scale) ?? 1, textEncoderScale: clip === scale ? null : textEncoderScale });
    }
    model = source(model.inputs.model);
  }
  const ckpt = model && model.inputs.ckpt_name;
  const vaes = Object.values(prompt).filter((node) => node && DECODERS.has(node.class_type))
    .map((node) => source(node.inputs.vae)).filter((node) => node && node.class_type === 'VAELoader');
  const vae = vaes.length ? asText(vaes[0].inputs.vae_name) : null;
  const settings = {
    prompt: prompt_, negative: text(inputs.negative), seed: number(inputs.seed), steps: number(inputs.steps),
    cfg: number(inputs.cfg), width: inpaint ? null : number(latent.inputs.width),
    height: inpaint ? null : number(latent.inputs.height), scheduler: SAMPLERS[inputs.sampler_name],
    strength: inpaint && number(inputs.denoise) < 1 ? number(inputs.denoise) : null,
    clipSkip: typeof stop === 'number' && stop < 0 ? -stop : null, // CLIPSetLastLayer's -2 is A1111's 2
    sampling: samplingOf(modelSampling && PREDICTIONS[modelSampling.sampling], modelSampling?.zsnr === true,
      SAMPLERS[inputs.sampler_name], inputs.scheduler, inputs.sampler_name),
  };
  if (tiledDecode(prompt)) settings.tiledVae = true;
  if (freeu) settings.freeu = freeu;
  leftOut.push(...[...new Set(Object.values(prompt).map((node) => node && node.class_type))]
    .filter((type) => type && !CARRIED.has(type)).sort());
  if (modelSampling && !PREDICTIONS[modelSampling.sampling]) {
    leftOut.push(`ModelSamplingDiscrete's sampling '${modelSampling.sampling}' (the model's own here)`);
  }
  const unknownSampler = samplerLeftOut(asText(inputs.sampler_name), settings);
  if (unknownSampler) leftOut.push(unknownSampler);
  if (second) settings.hires = hiresOf(second, sampler, latent, source, number, leftOut);
  if (number(latent.inputs.grow_mask_by) > 0) leftOut.push("VAEEncodeForInpaint's grow_mask_by (the mask as it is)");
  if (refiners) leftOut.push(`the refiner pass (${refiners} more KSamplerAdvanced)`);
  if (controls.length > 1) leftOut.push(`${controls.length - 1} more ControlNet${controls.length > 2 ? 's' : ''}`);
  if (adapters.length > 1) leftOut.push(`${adapters.length - 1} more IP-Adapter${adapters.length > 2 ? 's' : ''}`);
  const ipAdapter = adapters.length ? ipAdapterOf(adapters[adapters.length - 1], source, number) : null;
  if (ipAdapter && ipAdapter.type && ipAdapter.type !== 'linear') {
    leftOut.push(`the IP-Adapter's weight type '${ipAdapter.type}' (it acts alike on every layer)`);
  }
  if (ipAdapter && ((ipAdapter.start ?? 0) > 0 || (ipAdapter.end ?? 1) < 1)) {
    leftOut.push("the IP-Adapter's start and end (it acts on every step)");
  }
  return { settings, checkpoint: typeof ckpt === 'string' && ckpt ? ckpt : null, loras, vae, inpaint,
    control: controls.length ? controlOf(controls[controls.length - 1], source, number) : null, ipAdapter, leftOut };
}

/** {image (the LoadImage's file in ComfyUI's input folder, or null), from (the node type the image comes from
 * otherwise), mask (a LoadImageMask's file, or null), maskFromAlpha (the mask is the LoadImage's own, read from
 * its transparency), model (InpaintModelConditioning: an inpainting model's, FLUX.1 Fill's)} of the latent
 * `latent` an inpainting graph samples: VAEEncodeForInpaint, InpaintModelConditioning, or SetLatentNoiseMask over a
 * VAEEncode; null for any other latent. */
export function inpaintOf(latent, source) {
  if (!latent || !INPAINT_LATENTS.has(latent.class_type)) return null;
  const { inputs } = latent;
  const encoded = latent.class_type === 'SetLatentNoiseMask' ? source(inputs.samples) : null;
  if (encoded && encoded.class_type !== 'VAEEncode') return null;
  const image = source(encoded ? encoded.inputs.pixels : inputs.pixels);
  const mask = source(inputs.mask);
  const file = imageFile(image);
  return { image: file, from: file ? null : image?.class_type ?? null,
    mask: mask?.class_type === 'LoadImageMask' ? asText(mask.inputs.image) : null,
    maskFromAlpha: mask?.class_type === 'LoadImage' && inputs.mask[1] === 1,
    model: latent.class_type === 'InpaintModelConditioning' };
}

/** {name (the IPAdapterModelLoader's file), encoder (the CLIPVisionLoader's file, or null), image, from (as
 * controlOf's), weight, type (its weight_type), start, end} of one IPAdapter node. */
function ipAdapterOf(adapter, source, number) {
  const loader = source(adapter.inputs.ipadapter);
  const vision = source(adapter.inputs.clip_vision);
  const image = source(adapter.inputs.image);
  return {
    name: asText(loader?.inputs.ipadapter_file), encoder: asText(vision?.inputs.clip_name), image: imageFile(image),
    from: imageFile(image) ? null : image?.class_type ?? null, weight: number(adapter.inputs.weight),
    type: asText(adapter.inputs.weight_type), start: number(adapter.inputs.start_at),
    end: number(adapter.inputs.end_at),
  };
}

/** {name (the ControlNetLoader's file), image (the LoadImage's file name in ComfyUI's input folder, or null), from
 * (the node type the image comes from otherwise: a preprocessor), strength, start, end} of one ControlNetApply
 * node. */
export function controlOf(apply, source, number) {
  const loader = source(apply.inputs.control_net);
  const image = source(apply.inputs.image);
  const file = imageFile(image);
  return {
    name: asText(loader?.inputs.control_net_name), image: file, from: file ? null : image?.class_type ?? null,
    strength: number(apply.inputs.strength), start: number(apply.inputs.start_percent),
    end: number(apply.inputs.end_percent),
  };
}

// how the ScaleLatents node enlarges latents (image_processor.LATENT_SCALING)
export const LATENT_SCALING = new Set(['bilinear', 'bilinear-antialiased', 'bicubic', 'bicubic-antialiased', 'nearest',
  'nearest-exact', 'area']);

/** {scale, strength, steps, seed, latent (how its latents are enlarged, as ScaleLatents takes it; null: the image,
 * by lanczos)} of a hires fix's second pass: the KSampler `second` painting again, at its denoise,
 * what `first` made, enlarged on its way (see enlarging); null, said in `leftOut`, when the factor is unknown. What
 * is not carried over goes in `leftOut` too. */
function hiresOf(second, first, latent, source, number, leftOut) {
  const { scale, how, latent: method } = enlarging(second, first, source, number(latent.inputs.width));
  if (scale === null) {
    leftOut.push(`the second pass (${how}: its factor is not known here)`);
    return null;
  }
  const scaling = LATENT_SCALING.has(method) ? method : null; // the latents enlarged as ComfyUI does (not bislerp)
  if (how && !scaling) leftOut.push(`${how}${method ? ` by ${method}` : ''} (lanczos instead)`);
  for (const [key, what] of [['cfg', 'CFG'], ['sampler_name', 'sampler']]) {
    if (second.inputs[key] !== first.inputs[key]) leftOut.push(`the second pass's own ${what} (it takes the first's)`);
  }
  return { scale, strength: number(second.inputs.denoise) ?? 1, steps: number(second.inputs.steps),
    seed: number(second.inputs.seed), latent: scaling };
}

/** {scale (null when not known), how (what enlarges the image in ComfyUI's graph when it is not lanczos on pixels,
 * or null), latent (the upscale_method when only latents are enlarged, else null)} of the nodes between the first
 * pass's latents and the second KSampler's: LatentUpscaleBy / LatentUpscale, or VAEDecode, ImageScaleBy / ImageScale
 * / ImageUpscaleWithModel (an upscale model, by the factor its name gives: "4x-UltraSharp") and VAEEncode, ``width``
 * the first pass's; null when they do not lead from `first` to `second`. */
export function enlarging(second, first, source, width) {
  let scale = 1;
  let sized = false; // an ImageScale / LatentUpscale to a size: what comes before it does not change the result
  let how = null;
  let latent; // the method of the latent upscale when only latents are enlarged (null: pixels are too)
  let node = source(second.inputs.latent_image);
  for (let hops = 0; node && node !== first && hops < 100; hops += 1) {
    const { inputs } = node;
    const type = node.class_type;
    if (type === 'ImageUpscaleWithModel') {
      const model = asText(source(inputs.upscale_model)?.inputs.model_name) || 'upscale model';
      const factor = /(?:^|[^\d])([2-8])x|x([2-8])(?:\D|$)/i.exec(model);
      how = how || `the ${model} upscaler`;
      if (!sized) scale = factor ? scale * Number(factor[1] || factor[2]) : null;
    } else if (type === 'LatentUpscaleBy' || type === 'ImageScaleBy') {
      if (!(typeof inputs.scale_by === 'number' && inputs.scale_by > 0)) return null;
      if (!sized && scale !== null) scale *= inputs.scale_by;
    } else if (type === 'LatentUpscale' || type === 'ImageScale') {
      if (!(typeof inputs.width === 'number' && inputs.width > 0)) return null;
      if (!sized && scale !== null) scale *= width ? inputs.width / width : 1;
      sized = true;
    } else if (!DECODERS.has(type) && type !== 'VAEEncode') {
      return null;
    }
    if (type.startsWith('Latent')) {
      how = how || 'the latent upscale';
      if (latent === undefined) latent = asText(inputs.upscale_method) || 'nearest-exact';
    } else if (type.startsWith('Image')) latent = null;
    node = source(inputs.samples ?? inputs.pixels ?? inputs.image);
  }
  return node === first ? { scale: scale === null ? null : Math.round(scale * 1000) / 1000, how,
    latent: latent || null } : null;
}

/** The graph's sampler (one KSampler, with a second one painting its enlarged result again: a hires fix; or, with
 * ComfyUI's SDXL base and refiner, the KSamplerAdvanced that starts from the empty latent), the second KSampler or
 * null, and how many more KSamplerAdvanced (a refiner pass) there are; throws for any other graph. */
function samplerOf(prompt, source) {
  const of = (type) => Object.values(prompt).filter((node) => node && node.class_type === type);
  const plain = of('KSampler');
  const advanced = of('KSamplerAdvanced');
  const fromEmpty = (node) => source(node.inputs.latent_image)?.class_type === 'EmptyLatentImage';
  if (plain.length === 1 && !advanced.length) return { sampler: plain[0], refiners: 0, second: null };
  if (plain.length === 2 && !advanced.length) {
    const first = plain.find(fromEmpty);
    const second = plain.find((node) => node !== first);
    if (first && enlarging(second, first, source, 1)) return { sampler: first, refiners: 0, second };
  }
  const base = plain.length ? [] : advanced.filter(fromEmpty);
  if (base.length === 1) return { sampler: base[0], refiners: advanced.length - 1, second: null };
  throw new Error(`this ComfyUI graph has ${plain.length} KSampler and ${advanced.length} KSamplerAdvanced nodes: `
    + "only a text-to-image graph of ComfyUI's core nodes (one KSampler, two for a hires fix, or a KSamplerAdvanced "
    + 'from an empty latent) can be read');
}
