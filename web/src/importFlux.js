// A FLUX.1 graph of another tool (comfyFlux.js) on the server's models: its FLUX.1 model folder (a FluxPipeline
// folder in the diffusers folder: the text encoders, tokenizers and scheduler, which ComfyUI's files do not all
// carry), the transformer file the graph names (diffusion_models; or the all-in-one checkpoint it is read from: the
// folder's own transformer is then not loaded), its LoRAs, its VAE file and its ControlNet.
import { text2imageGraph } from './graph.js';
import { findAdapters, findLoras, inpaintUploads } from './importAdapters.js';
import { findFluxFolder, findModel } from './modelFiles.js';

/** {document, notice} for what a FLUX.1 graph sets (fluxSettings' result, or parametersSettings' for Forge's
 * image, whose ``modules`` are its VAE and text encoders; ``from``: "ComfyUI's", "A1111's"), on the server's FLUX.1
 * folder; null when the server has none. */
export async function importedFlux(read, from) {
  const { settings, transformer, checkpoint, loras, control, kontext, inpaint, leftOut } = read;
  const encoders = [...read.encoders];
  let { vae } = read;
  let vaeFile = vae ? await findModel('vae', vae).catch(() => null) : null;
  for (const module of read.modules || []) { // Forge's VAE and text encoders, by their stems
    const file = !vae && await findModel('vae', module).catch(() => null);
    if (file) [vae, vaeFile] = [module, file];
    else encoders.push(module);
  }
  const folder = await findFluxFolder(transformer || checkpoint).catch(() => null);
  if (!folder) return null;
  const notes = [];
  const model = { repo: folder, family: 'flux', loras: [] };
  if (transformer) {
    model.transformer = await findModel('diffusion_models', transformer).catch(() => null);
    if (!model.transformer) {
      notes.push(`FLUX.1 transformer '${transformer}' is not among the server's diffusion models: the graph loads `
        + `${folder}'s`);
    }
  }
  if (checkpoint) { // FLUX.1 in one file: its transformer, the folder's text encoders and VAE
    model.transformerCheckpoint = await findModel('checkpoints', checkpoint).catch(() => null);
    notes.push(model.transformerCheckpoint ? `the VAE is ${folder}'s (${checkpoint}'s own is not read)`
      : `${from} checkpoint '${checkpoint}' is not among the server's checkpoints: the graph loads ${folder}'s models`);
  }
  if (encoders.length) notes.push(`the text encoders are ${folder}'s (${encoders.join(', ')} not read)`);
  await findLoras(loras, model, notes, 'flux');
  if (vae) {
    model.vae = vaeFile;
    if (!model.vae) notes.push(`VAE '${vae}' is not among the server's VAEs: the graph decodes with ${folder}'s`);
  }
  if (kontext && control) notes.push(`ControlNet '${control.name}' left out (the Kontext preset takes none)`);
  else await findAdapters(control, null, model, notes, 'flux');
  if (inpaint) {
    model.inpaint = inpaint;
    notes.push(inpaintUploads(inpaint));
  }
  if (kontext) { // the image to edit: ComfyUI's input file, which the page has not
    model.kontext = kontext;
    notes.push(`upload the image to edit (${kontext.image ? `${kontext.image} in ComfyUI's input folder`
      : `made in ComfyUI's graph by ${kontext.from}`}) into the Load Image node`);
  }
  if (leftOut.length) notes.push(`left out: ${leftOut.join(', ')}`);
  return { document: text2imageGraph(model, settings), notice: notes.length ? notes.join('; ') : null };
}
