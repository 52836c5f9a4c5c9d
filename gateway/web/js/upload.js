// Uploads straight to storage (API.md, Media Service): a slot, then one signed PUT with the
// slot's headers, or signed parts (multipart) that survive a page reload, or the dedup proof.

import { proofFor, sha256OfFile } from "./hashing.js";

const RESUME_PREFIX = "ferry.upload.";
// A message may reference a media once storage holds verified bytes (API.md: 409
// media_not_uploaded before); recipients then see the placeholder until `media_update`.
const SENDABLE = new Set(["uploaded", "processing", "ready", "failed", "blocked", "expired"]);
const VERIFY_DEADLINE_MS = 180_000;

async function untilSendable(api, mediaId, progress, total) {
  progress({ phase: "verifying", sent: total, total });
  const deadline = Date.now() + VERIFY_DEADLINE_MS;
  for (let delay = 200; ; delay = Math.min(delay * 1.5, 2000)) {
    const document = await api.mediaDocument(mediaId);
    if (SENDABLE.has(document.state)) {
      if (["failed", "blocked", "expired"].includes(document.state)) {
        throw new Error(`the upload ended ${document.state}${document.error ? `: ${document.error.message}` : ""}`);
      }
      return document;
    }
    if (Date.now() > deadline) throw new Error("storage did not confirm the upload in time");
    await new Promise((resolve) => setTimeout(resolve, delay));
  }
}

function resumeKey(sha256, size) { return `${RESUME_PREFIX}${sha256}.${size}`; }

// Multipart uploads this browser left unfinished (pick the same file again to resume).
export function unfinishedUploads() {
  const found = [];
  for (let i = 0; i < localStorage.length; i++) {
    const key = localStorage.key(i);
    if (!key.startsWith(RESUME_PREFIX)) continue;
    try { found.push(JSON.parse(localStorage.getItem(key))); } catch { localStorage.removeItem(key); }
  }
  return found;
}

function contentTypeOf(file) {
  if (file.type) return file.type;
  const extension = file.name.split(".").pop().toLowerCase();
  return { ogg: "audio/ogg", opus: "audio/ogg", m4a: "audio/mp4", amr: "audio/amr", mp4: "video/mp4",
    mov: "video/quicktime", pdf: "application/pdf", heic: "image/heic" }[extension] || "application/octet-stream";
}

// PUT bytes with progress (fetch has no upload progress, XHR does). Resolves with the response ETag.
function put(url, headers, body, onBytes) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("PUT", url);
    for (const [name, value] of Object.entries(headers || {})) {
      // The browser sets Content-Length itself and refuses to be told.
      if (name.toLowerCase() !== "content-length") xhr.setRequestHeader(name, value);
    }
    xhr.upload.onprogress = (event) => onBytes(event.loaded);
    xhr.onload = () => (xhr.status >= 200 && xhr.status < 300
      ? resolve(xhr.getResponseHeader("ETag"))
      : reject(new Error(`storage answered ${xhr.status} to the PUT`)));
    xhr.onerror = () => reject(new Error("the PUT to storage failed (network or CORS)"));
    xhr.send(body);
  });
}

/**
 * Upload `file`; `progress({phase, sent, total})` is called along the way.
 * Resolves with {media_id, media_type, content_type, deduplicated, resumed}.
 */
export async function uploadFile(api, file, progress = () => {}) {
  const uploaded = await transfer(api, file, progress);
  await untilSendable(api, uploaded.media_id, progress, file.size);
  progress({ phase: "done", sent: file.size, total: file.size });
  return uploaded;
}

async function transfer(api, file, progress) {
  const total = file.size;
  progress({ phase: "hashing", sent: 0, total });
  const sha256 = await sha256OfFile(file);
  const content_type = contentTypeOf(file);
  const key = resumeKey(sha256, total);

  const saved = JSON.parse(localStorage.getItem(key) || "null");
  if (saved) {
    try {
      const done = await multipart(api, file, saved, progress, true);
      localStorage.removeItem(key);
      return { ...done, content_type, resumed: true };
    } catch (error) {
      // The slot expired or was swept: start again from a new slot.
      console.warn("resume failed, starting over", error);
      localStorage.removeItem(key);
    }
  }

  const slot = await api.createUpload({ content_type, size: total, sha256, filename: file.name.slice(0, 255) });
  const result = { media_id: slot.media_id, media_type: slot.media_type, content_type, deduplicated: false, resumed: false };
  if (slot.dedup) {
    // Same bytes already stored: prove possession, upload nothing.
    progress({ phase: "proving", sent: total, total });
    await api.proof(slot.media_id, await proofFor(file, slot.dedup));
    return { ...result, deduplicated: true };
  }
  if (slot.upload.method === "PUT") {
    await put(slot.upload.url, slot.upload.headers, file, (sent) => progress({ phase: "uploading", sent, total }));
    return result;
  }
  const plan = {
    media_id: slot.media_id, media_type: slot.media_type, sha256, size: total, name: file.name,
    part_size: slot.upload.part_size, part_count: slot.upload.part_count, expires_at: slot.upload.expires_at,
  };
  localStorage.setItem(key, JSON.stringify(plan));
  await multipart(api, file, plan, progress, false);
  localStorage.removeItem(key);
  return result;
}

async function multipart(api, file, plan, progress, resuming) {
  const total = file.size;
  // What storage already has (after a reload, possibly most of the file).
  const have = new Map();
  if (resuming) {
    for (const part of (await api.listParts(plan.media_id)).parts) have.set(part.part_number, part.size);
  }
  let sent = [...have.values()].reduce((a, b) => a + b, 0);
  progress({ phase: resuming ? "resuming" : "uploading", sent, total });
  const missing = [];
  for (let n = 1; n <= plan.part_count; n++) if (!have.has(n)) missing.push(n);
  // Sign a few parts at a time: part URLs are short-lived.
  for (let i = 0; i < missing.length; i += 4) {
    const signed = (await api.signParts(plan.media_id, missing.slice(i, i + 4))).parts;
    for (const part of signed) {
      const start = (part.part_number - 1) * plan.part_size;
      const body = file.slice(start, Math.min(start + plan.part_size, total));
      await put(part.url, part.headers, body, (bytes) => progress({ phase: "uploading", sent: sent + bytes, total }));
      sent += body.size;
    }
  }
  // ETags from storage's own list, so nothing depends on the bucket exposing the ETag header.
  const parts = (await api.listParts(plan.media_id)).parts
    .map((part) => ({ part_number: part.part_number, etag: part.etag }))
    .sort((a, b) => a.part_number - b.part_number);
  await api.complete(plan.media_id, parts);
  return { media_id: plan.media_id, media_type: plan.media_type, deduplicated: false };
}
