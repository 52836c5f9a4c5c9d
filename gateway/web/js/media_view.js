// One media of a message: placeholder at once (inline thumbnail or blurhash), then the real
// thing when `media_update` says ready. Download URLs are short-lived: asked for when shown.

import { blurhashCanvas } from "./placeholders.js";

const players = new Map(); // media_id -> Hls instance, destroyed when the element is redrawn

export function renderMedia(state, reference) {
  const box = document.createElement("div");
  box.className = "media";
  box.dataset.mediaId = reference.media_id;
  draw(state, box);
  return box;
}

export function updateMedia(state, frame) {
  const known = state.media.get(frame.media_id) || {};
  state.media.set(frame.media_id, { ...known, state: frame.state, meta: frame.meta || known.meta, variants: frame.variants });
  for (const box of document.querySelectorAll(`.media[data-media-id="${CSS.escape(frame.media_id)}"]`)) {
    // Never pull a voice note or video from under someone listening to it (it plays on from
    // the original); the processed variant is used the next time it is drawn.
    const playing = [...box.querySelectorAll("audio, video")].some((element) => !element.paused && !element.ended);
    if (playing && frame.state === "ready") { box.dataset.state = frame.state; continue; }
    draw(state, box);
  }
}

function hasVariant(media, name) { return (media.variants || []).some((v) => v.name === name); }

function draw(state, box) {
  const media = state.media.get(box.dataset.mediaId);
  const previous = players.get(media.media_id);
  if (previous) { previous.destroy(); players.delete(media.media_id); }
  box.replaceChildren();
  box.dataset.state = media.state;
  box.dataset.mediaType = media.media_type;
  box.classList.toggle("sensitive", Boolean(media.meta && media.meta.sensitive));
  if (["failed", "blocked", "expired"].includes(media.state)) {
    box.append(`[${media.media_type} ${media.state}]`);
    return;
  }
  const ready = media.state === "ready";
  if (media.media_type === "image") drawImage(state, box, media, ready);
  else if (media.media_type === "voice") drawVoice(state, box, media, ready);
  else if (media.media_type === "video") drawVideo(state, box, media, ready);
  else drawDocument(state, box, media);
}

function placeholder(media) {
  if (media.thumbnail) {
    const img = document.createElement("img");
    img.className = "inline-thumbnail";
    img.alt = "preview";
    img.src = `data:image/jpeg;base64,${media.thumbnail}`;
    return img;
  }
  if (media.meta && media.meta.blurhash) {
    const width = media.meta.width || 4, height = media.meta.height || 3;
    return blurhashCanvas(media.meta.blurhash, 32, Math.max(1, Math.round((32 * height) / width)));
  }
  const empty = document.createElement("div");
  empty.className = "placeholder";
  return empty;
}

async function signed(state, media, variant) {
  return (await state.api.downloadUrl(media.media_id, variant)).url;
}

function drawImage(state, box, media, ready) {
  const preview = placeholder(media);
  box.append(preview);
  if (!ready) return;
  const variant = hasVariant(media, "thumb_640") ? "thumb_640" : "original";
  signed(state, media, variant).then((url) => {
    const img = new Image();
    img.className = "image";
    img.alt = "photo";
    img.onload = () => preview.replaceWith(img);
    img.src = url;
    img.addEventListener("click", async () => {
      const large = hasVariant(media, "thumb_1280") ? "thumb_1280" : "original";
      document.getElementById("viewer-image").src = await signed(state, media, large);
      document.getElementById("viewer").showModal();
    });
  }, (error) => { box.title = error.message; });
}

function drawVoice(state, box, media, ready) {
  const audio = document.createElement("audio");
  audio.controls = true;
  audio.preload = "metadata";
  box.append(audio);
  // The low-bitrate Opus copy once processed; the original meanwhile. <audio> plays while downloading.
  const variant = ready && hasVariant(media, "voice_low") ? "voice_low" : "original";
  signed(state, media, variant).then((url) => { audio.src = url; }, (error) => { box.title = error.message; });
  if (media.meta && media.meta.duration_ms) box.append(` ${(media.meta.duration_ms / 1000).toFixed(1)} s`);
}

function drawVideo(state, box, media, ready) {
  const preview = placeholder(media);
  box.append(preview);
  if (!ready) return;
  const video = document.createElement("video");
  video.controls = true;
  video.playsInline = true;
  if (hasVariant(media, "poster")) signed(state, media, "poster").then((url) => { video.poster = url; }, () => {});
  const playOriginal = () => signed(state, media, "original").then((url) => { video.src = url; });
  state.api.downloadUrl(media.media_id, "hls").then(({ url }) => {
    // A signed master URL that plays with no headers (API.md v1.1, Browsers and players).
    if (window.Hls && window.Hls.isSupported()) {
      // No xhrSetup: the master, rendition and segment URLs are all signed (no header needed).
      const hls = new window.Hls();
      players.set(media.media_id, hls);
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (data.fatal) { box.dataset.hlsError = data.details; hls.destroy(); playOriginal(); }
      });
      hls.loadSource(url);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = url;
    } else {
      playOriginal();
    }
  }, () => playOriginal());
  preview.replaceWith(video);
}

function drawDocument(state, box, media) {
  const link = document.createElement("a");
  link.className = "document";
  link.textContent = `⤓ ${(media.meta && media.meta.filename) || media.content_type || "document"}`;
  link.href = "#";
  link.rel = "noopener";
  // Signed URLs expire: fetch a fresh one on each click.
  link.addEventListener("click", async (event) => {
    event.preventDefault();
    window.open(await signed(state, media, "original"), "_blank", "noopener");
  });
  signed(state, media, "original").then((url) => { link.dataset.href = url; }, () => {});
  box.append(link);
}
