// ComfyUI's graphs read as ours. Its images and "Save (API format)" files hold the graph as {id: {class_type,
// inputs}}, an input a value or [source id, output index]. A text-to-image graph of its core nodes (a checkpoint
// loader, two CLIPTextEncode, EmptyLatentImage, KSampler, VAEDecode) becomes the text-to-image preset with the
// same prompt, negative prompt, seed, steps, CFG, sampler and size, on the page's model: the settings carry over,
// the pixels do not (ComfyUI's samplers draw their noise and take their steps their own way).
import { text2imageGraph } from './graph.js';

// ComfyUI's sampler_name -> our scheduler node types (its "scheduler", the sigma spacing, is not carried over)
const SAMPLERS = {
  euler: 'EulerDiscreteScheduler', euler_ancestral: 'EulerAncestralDiscreteScheduler', ddim: 'DDIMScheduler',
  ddpm: 'DDPMScheduler', dpmpp_2m: 'DPMSolverMultistepScheduler', uni_pc: 'UniPCMultistepScheduler', lcm: 'LCMScheduler',
};

/** Whether `json` is a graph in ComfyUI's API format. */
export const isComfyPrompt = (json) => Boolean(json) && typeof json === 'object' && !Array.isArray(json) &&
  !('nodes' in json) && Object.values(json).some((node) => node && typeof node.class_type === 'string');

/** Our text-to-image document for ComfyUI's graph `prompt` (``repo``: the model it loads); throws, saying why,
 * for a graph that is not a plain text-to-image one. */
export function comfyWorkflow(prompt, repo) {
  const samplers = Object.values(prompt).filter((node) => node && node.class_type === 'KSampler');
  if (samplers.length !== 1) {
    throw new Error(`this ComfyUI graph has ${samplers.length} KSampler nodes: only a text-to-image graph of ComfyUI's `
      + 'core nodes (one KSampler) can be read');
  }
  const { inputs } = samplers[0];
  const source = (link) => (Array.isArray(link) ? prompt[String(link[0])] : null);
  const text = (link) => {
    const node = source(link);
    return node && node.class_type === 'CLIPTextEncode' && typeof node.inputs.text === 'string' ? node.inputs.text : null;
  };
  const latent = source(inputs.latent_image);
  if (!latent || latent.class_type !== 'EmptyLatentImage') {
    throw new Error('this ComfyUI graph does not start from an EmptyLatentImage: only text-to-image graphs can be read');
  }
  const prompt_ = text(inputs.positive);
  if (prompt_ === null) throw new Error("this ComfyUI graph's positive prompt is not a CLIPTextEncode with its text");
  const number = (value) => (typeof value === 'number' ? value : null);
  return text2imageGraph(repo, {
    prompt: prompt_, negative: text(inputs.negative), seed: number(inputs.seed), steps: number(inputs.steps),
    cfg: number(inputs.cfg), width: number(latent.inputs.width), height: number(latent.inputs.height),
    scheduler: SAMPLERS[inputs.sampler_name],
  });
}
