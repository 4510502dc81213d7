// The adapters another tool's graph or image names, found among the server's model files: its LoRAs, its ControlNet
// and its IP-Adapter (with its CLIP vision encoder), and the images they take, which the page asks to upload.
import { findEncoder, findModel, otherFamily } from './modelFiles.js';

/** Puts in ``model`` the server's files for the graph's ControlNet ``control`` and IP-Adapter ``ipAdapter`` (either
 * may be null), and in ``notes`` what the server lacks, a ControlNet made for another family than ``family`` (the
 * model's), and the images to upload (ComfyUI's input files, which the page has not). */
export async function findAdapters(control, ipAdapter, model, notes, family) {
  const uploads = (what, { image, where }) => {
    const from = where || (image ? `${image} in ComfyUI's input folder` : "made in ComfyUI's graph");
    return `upload ${what} (${from}) into the Load Image node`;
  };
  if (control) {
    const name = await findModel('controlnet', control.name).catch(() => null);
    const other = name && await otherFamily('controlnet', name, family);
    if (name && !other) model.control = { ...control, name };
    notes.push(other ? `ControlNet '${name}' left out: it is for ${other} models`
      : name ? uploads('the control image', control) : `ControlNet '${control.name}' is not among the server's ControlNets`);
  }
  if (ipAdapter) {
    const name = await findModel('ipadapter', ipAdapter.name).catch(() => null);
    const encoder = !name ? null : await (ipAdapter.encoder ? findModel('clip_vision', ipAdapter.encoder)
      : findEncoder(ipAdapter.encoderSize)).catch(() => null); // A1111's: named by its preprocessor alone
    if (name && encoder) model.ipAdapter = { ...ipAdapter, name, encoder };
    const wanted = ipAdapter.encoder ? `'${ipAdapter.encoder}'` : ipAdapter.encoderSize || 'for it';
    notes.push(name && encoder ? uploads("the IP-Adapter's image", ipAdapter)
      : name ? `CLIP vision model ${wanted} is not among the server's (the IP-Adapter left out)`
        : `IP-Adapter '${ipAdapter.name}' is not among the server's IP-Adapters`);
  }
}

/** Puts in ``model.loras`` the server's files for ``loras`` ({name, scale, textEncoderScale}: another tool's names)
 * made for ``family`` (or of a family that cannot be told), as A1111 skips a LoRA of another family; and in
 * ``notes`` the others. */
export async function findLoras(loras, model, notes, family) {
  for (const lora of loras) {
    const name = await findModel('loras', lora.name).catch(() => null);
    const other = name && await otherFamily('loras', name, family);
    if (name && !other) model.loras.push({ ...lora, name });
    else notes.push(other ? `LoRA '${name}' left out: it is for ${other} models`
      : `LoRA '${lora.name}' is not among the server's LoRAs`);
  }
}

/** The notice's request for an inpainting graph's image and mask (inpaintOf's ``inpaint``), which the page has
 * not: ComfyUI's input files, or its LoadImage's transparency. */
export function inpaintUploads({ image, from, mask, maskFromAlpha }) {
  const where = (file, made) => (file ? `${file} in ComfyUI's input folder` : `made in ComfyUI's graph by ${made}`);
  const maskWhere = maskFromAlpha ? "ComfyUI reads it from the image's transparency" : where(mask, 'a node');
  return `upload the image to inpaint (${where(image, from)}) and its mask (white where it is painted again; `
    + `${maskWhere}) into the Load Image nodes`;
}
