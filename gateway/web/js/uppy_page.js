// An Uppy Dashboard uploading to Ferry with @uppy/aws-s3 (docs/uppy.md).
//
// Uppy moves the bytes; this page does what only a Ferry client can: hash the file, create the
// slot (POST /v1/media/uploads), answer the dedup challenge (no upload at all), and remember a
// multipart slot so that the same file added after a reload resumes where storage stopped.
// The plugin talks to Companion-style routes on the Media Service (/v1/uppy/{capability}/s3/...).

import { Api, devLogin, loadConfig } from "./api.js";
import { proofFor, sha256OfFile } from "./hashing.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "ferry.session";
const PLAN_PREFIX = "ferry.uppy.";
// The plugin asks `getChunkSize({size})` with the size only: Ferry's part size by file size.
const state = { results: [], uppy: null, partSizes: new Map() };
window.ferryUppy = state;

function contentTypeOf(file) {
  if (file.type) return file.type;
  const extension = (file.name.split(".").pop() || "").toLowerCase();
  return { ogg: "audio/ogg", m4a: "audio/mp4", amr: "audio/amr", mp4: "video/mp4", mov: "video/quicktime",
    pdf: "application/pdf", heic: "image/heic" }[extension] || "application/octet-stream";
}

function report(entry) {
  state.results.push(entry);
  const item = document.createElement("li");
  item.dataset.mediaId = entry.media_id;
  item.textContent = `${entry.name}: ${entry.how} (${entry.media_id})`;
  $("uppy-results").append(item);
}

// Before Uppy uploads: one Ferry slot per file (or a resumed one, or a dedup proof).
async function prepare(api, uppy, fileIDs) {
  for (const id of fileIDs) {
    const file = uppy.getFile(id);
    const data = file.data;
    const sha256 = await sha256OfFile(data);
    const planKey = `${PLAN_PREFIX}${sha256}.${data.size}`;
    const saved = JSON.parse(localStorage.getItem(planKey) || "null");
    if (saved) {
      // After a reload: the same slot; the plugin lists what storage has and sends the rest.
      uppy.setFileMeta(id, { media_id: saved.media_id, part_size: saved.part_size, ferry_multipart: true, resumed: true, plan_key: planKey });
      state.partSizes.set(data.size, saved.part_size);
      uppy.setFileState(id, { s3Multipart: { key: saved.media_id, uploadId: saved.media_id } });
      continue;
    }
    const slot = await api.createUpload({ content_type: contentTypeOf(data), size: data.size, sha256, filename: file.name.slice(0, 255) });
    if (slot.dedup) {
      // Already stored: prove possession; nothing to upload, so Uppy never sees it.
      await api.proof(slot.media_id, await proofFor(data, slot.dedup));
      report({ name: file.name, media_id: slot.media_id, how: "deduplicated", resumed: false });
      uppy.removeFile(id);
      continue;
    }
    const multipart = slot.upload.method === "MULTIPART";
    uppy.setFileMeta(id, { media_id: slot.media_id, part_size: multipart ? slot.upload.part_size : 0, ferry_multipart: multipart, resumed: false, plan_key: planKey });
    if (multipart) {
      state.partSizes.set(data.size, slot.upload.part_size);
      localStorage.setItem(planKey, JSON.stringify({ media_id: slot.media_id, part_size: slot.upload.part_size }));
      // The slot's multipart upload exists already: the plugin resumes into it (with no parts yet).
      uppy.setFileState(id, { s3Multipart: { key: slot.media_id, uploadId: slot.media_id } });
    }
  }
}

async function mintEndpoint(config, token) {
  const response = await fetch(`${config.media_url}/v1/uppy/capabilities`, {
    method: "POST", headers: { Authorization: `Bearer ${token}` },
  });
  if (!response.ok) throw new Error(`the Media Service answered ${response.status}`);
  return (await response.json()).companion_endpoint;
}

async function enter(config, session) {
  $("uppy-me").textContent = `${session.user_id} · ${session.device_id}`;
  $("uppy-login").hidden = true;
  const api = new Api(config, session.token);
  const companionEndpoint = await mintEndpoint(config, session.token);
  const uppy = new window.Uppy.Uppy({ id: "ferry", autoProceed: false })
    .use(window.Uppy.Dashboard, { inline: true, target: "#dashboard", height: 360, proudlyDisplayPoweredByUppy: false })
    .use(window.Uppy.AwsS3, {
      companionEndpoint,
      // Ferry decided at slot time: its part size is the plan's, never Uppy's own guess.
      shouldUseMultipart: (file) => file.meta.ferry_multipart === true,
      getChunkSize: ({ size }) => state.partSizes.get(size) || 5 * 1024 * 1024,
      limit: 2,
    });
  uppy.addPreProcessor((fileIDs) => prepare(api, uppy, fileIDs));
  uppy.on("upload-success", (file) => {
    if (file.meta.plan_key) localStorage.removeItem(file.meta.plan_key);
    report({ name: file.name, media_id: file.meta.media_id, how: file.meta.resumed ? "resumed" : "uploaded", resumed: Boolean(file.meta.resumed) });
  });
  uppy.on("upload-error", (file, error) => { $("uppy-error").textContent = `${file.name}: ${error.message}`; });
  state.uppy = uppy;
  document.body.dataset.ready = "true";
}

async function start() {
  const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  // Signed in already (this tab): no form. Otherwise say the form is up (tests wait for either).
  if (saved) $("uppy-login").hidden = true;
  else document.body.dataset.login = "shown";
  const config = await loadConfig();
  $("uppy-login").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const session = await devLogin($("uppy-user").value.trim(), "uppy");
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      await enter(config, session);
    } catch (error) { $("uppy-error").textContent = `Sign-in failed: ${error.message}`; }
  });
  if (saved) await enter(config, saved);
}

start().catch((error) => { $("uppy-error").textContent = error.message; });
