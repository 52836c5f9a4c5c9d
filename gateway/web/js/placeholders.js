// What a message shows before the media is ready: the sender's tiny inline thumbnail
// (at most 4096 bytes, API.md) or, once processed, the blurhash from `meta.blurhash`.

import { base64 } from "./hashing.js";

const THUMBNAIL_LIMIT = 4096;

// A small JPEG of an image or the first frame of a video, for `media[].thumbnail`; null if none fits.
export async function inlineThumbnail(file) {
  let source;
  try {
    if (file.type.startsWith("image/")) source = await createImageBitmap(file);
    else if (file.type.startsWith("video/")) source = await firstFrame(file);
    else return null;
  } catch {
    return null; // a format this browser cannot decode (HEIC...): the blurhash comes later
  }
  for (const [edge, quality] of [[64, 0.6], [48, 0.5], [32, 0.4]]) {
    const scale = Math.min(1, edge / Math.max(source.width, source.height));
    const canvas = new OffscreenCanvas(Math.max(1, Math.round(source.width * scale)), Math.max(1, Math.round(source.height * scale)));
    canvas.getContext("2d").drawImage(source, 0, 0, canvas.width, canvas.height);
    const blob = await canvas.convertToBlob({ type: "image/jpeg", quality });
    if (blob.size <= THUMBNAIL_LIMIT) return base64(await blob.arrayBuffer());
  }
  return null;
}

function firstFrame(file) {
  return new Promise((resolve, reject) => {
    const video = document.createElement("video");
    video.muted = true;
    video.preload = "auto";
    video.src = URL.createObjectURL(file);
    video.onloadeddata = () => { createImageBitmap(video).then(resolve, reject).finally(() => URL.revokeObjectURL(video.src)); };
    video.onerror = () => reject(new Error("undecodable video"));
  });
}

// --- blurhash decoding (the published algorithm, https://blurha.sh; small enough to keep here)
const DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#$%*+,-.:;=?@[]^_{|}~";
const decode83 = (text) => [...text].reduce((value, c) => value * 83 + DIGITS.indexOf(c), 0);
const toLinear = (v) => { const x = v / 255; return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; };
const toSrgb = (v) => { const x = Math.max(0, Math.min(1, v)); return Math.round((x <= 0.0031308 ? x * 12.92 : 1.055 * x ** (1 / 2.4) - 0.055) * 255); };
const signPow = (v, e) => Math.sign(v) * Math.abs(v) ** e;

export function blurhashCanvas(hash, width = 32, height = 32) {
  const sizeFlag = decode83(hash[0]);
  const ny = Math.floor(sizeFlag / 9) + 1, nx = (sizeFlag % 9) + 1;
  const maxValue = (decode83(hash[1]) + 1) / 166;
  const colors = [];
  const dc = decode83(hash.slice(2, 6));
  colors.push([toLinear(dc >> 16), toLinear((dc >> 8) & 255), toLinear(dc & 255)]);
  for (let i = 1; i < nx * ny; i++) {
    const v = decode83(hash.slice(4 + i * 2, 6 + i * 2));
    colors.push([Math.floor(v / 361), Math.floor(v / 19) % 19, v % 19].map((q) => signPow((q - 9) / 9, 2) * maxValue));
  }
  const canvas = document.createElement("canvas");
  canvas.width = width; canvas.height = height;
  const context = canvas.getContext("2d");
  const pixels = context.createImageData(width, height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let r = 0, g = 0, b = 0;
      for (let j = 0; j < ny; j++) {
        for (let i = 0; i < nx; i++) {
          const basis = Math.cos((Math.PI * x * i) / width) * Math.cos((Math.PI * y * j) / height);
          const color = colors[i + j * nx];
          r += color[0] * basis; g += color[1] * basis; b += color[2] * basis;
        }
      }
      const at = 4 * (x + y * width);
      pixels.data.set([toSrgb(r), toSrgb(g), toSrgb(b), 255], at);
    }
  }
  context.putImageData(pixels, 0, 0);
  canvas.className = "blurhash";
  return canvas;
}
