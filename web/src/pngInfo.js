// Workflows inside PNGs: the server writes each job's workflow into its output images as a "workflow" tEXt
// chunk (as ComfyUI does), so an image loaded here brings back the graph that made it.

const SIGNATURE = [137, 80, 78, 71, 13, 10, 26, 10];

/** The tEXt chunks of a PNG as {keyword: text}; throws when the bytes are not a PNG. */
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
    if (type === 'tEXt') {
      const split = data.indexOf(0);
      if (split > 0) found[latin1.decode(data.subarray(0, split))] = latin1.decode(data.subarray(split + 1));
    }
    if (type === 'IEND') break;
    at += 12 + length;
  }
  return found;
}

/** The workflow document in a dropped or chosen file: a saved .json, or a PNG the server made. */
export async function readWorkflowFile(file) {
  if (file.type === 'image/png' || /\.png$/i.test(file.name)) {
    const text = pngText(await file.arrayBuffer()).workflow;
    if (!text) throw new Error('this PNG holds no workflow (only images a diffblocks server made do)');
    return JSON.parse(text);
  }
  return JSON.parse(await file.text());
}
