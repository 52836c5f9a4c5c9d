// The Ferry web client: pick a dev user, list conversations, chat with text, photos, voice
// notes, videos and documents. Plain ES modules; the contract is ../../../../shared/API.md.

import { Api, ApiError, devLogin, loadConfig } from "./api.js";
import { inlineThumbnail } from "./placeholders.js";
import { unfinishedUploads, uploadFile } from "./upload.js";
import { renderMedia, updateMedia } from "./media_view.js";

const $ = (id) => document.getElementById(id);
const SESSION_KEY = "ferry.session"; // per tab: two windows can be two users

const state = {
  config: null,
  api: null,
  me: null, // {user_id, device_id, token}
  socket: null,
  conversations: new Map(), // id -> conversation summary
  messages: new Map(), // conversation id -> Map(message_id -> message)
  media: new Map(), // media_id -> {state, meta, variants, media_type}
  current: null,
  pendingSends: new Map(), // client_msg_id -> {resolve, reject}
  listAvailable: true,
};
// For tests and the curious: the page's live state.
window.ferry = state;

function knownConversationsKey() { return `ferry.conversations.${state.me.user_id}`; }

function rememberConversation(id) {
  const known = new Set(JSON.parse(localStorage.getItem(knownConversationsKey()) || "[]"));
  known.add(id);
  localStorage.setItem(knownConversationsKey(), JSON.stringify([...known]));
}

// --- sign in ---------------------------------------------------------------------------------

async function start() {
  try {
    state.config = await loadConfig();
  } catch (error) {
    $("login-error").textContent = error.message;
    return;
  }
  if (!state.config.dev_login) {
    $("login-note").textContent = "Dev sign-in is off on this deployment (production).";
    $("login-button").disabled = true;
  }
  $("login-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      const session = await devLogin($("login-user").value.trim(), $("login-device").value.trim() || "web");
      sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
      await enter(session);
    } catch (error) {
      $("login-error").textContent = `Sign-in failed: ${error.message}`;
    }
  });
  const saved = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
  if (saved) await enter(saved);
}

async function enter(session) {
  state.me = session;
  state.api = new Api(state.config, session.token);
  $("login").hidden = true;
  $("chat").hidden = false;
  $("me").textContent = `${session.user_id} · ${session.device_id}`;
  $("new-chat").addEventListener("submit", onOpenChat);
  $("composer").addEventListener("submit", onSend);
  showResumable();
  scheduleRenewal();
  connect();
  await refreshConversations();
}

// --- keeping the token fresh (the gateway closes a WebSocket with 4001 when its token expires) --

const RENEW_BEFORE_MS = 60_000;

function tokenExpiry(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return typeof payload.exp === "number" ? payload.exp * 1000 : null;
  } catch { return null; }
}

async function renewToken() {
  // Dev mode only: a real deployment gets new tokens from its identity provider instead.
  if (!state.config.dev_login) return false;
  const session = await devLogin(state.me.user_id, state.me.device_id);
  state.me = session;
  state.api.token = session.token;
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  // The open WebSocket lives on with the new token (same user and device).
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(JSON.stringify({ type: "auth", token: session.token }));
  }
  scheduleRenewal();
  return true;
}

function scheduleRenewal() {
  clearTimeout(state.renewTimer);
  const expiry = tokenExpiry(state.me.token);
  if (expiry === null) return;
  const wait = Math.max(0, expiry - Date.now() - RENEW_BEFORE_MS);
  state.renewTimer = setTimeout(() => renewToken().catch((error) => console.warn("token renewal failed", error)), wait);
}

// --- conversations ---------------------------------------------------------------------------

async function refreshConversations() {
  try {
    const page = await state.api.listConversations();
    for (const summary of page.conversations) state.conversations.set(summary.conversation_id, summary);
    $("list-note").textContent = "";
  } catch (error) {
    // Servers without the v1.1 list: the conversations this browser has seen instead.
    state.listAvailable = false;
    $("list-note").textContent = `Conversation list unavailable (${error.message}); showing the ones seen here.`;
    for (const id of JSON.parse(localStorage.getItem(knownConversationsKey()) || "[]")) {
      if (state.conversations.has(id)) continue;
      try { state.conversations.set(id, await state.api.conversation(id)); } catch { /* left or gone */ }
    }
  }
  renderConversations();
}

function conversationName(summary) {
  if (summary.title) return summary.title;
  const others = (summary.members || []).filter((m) => m !== state.me.user_id);
  return others.join(", ") || "(just you)";
}

function renderConversations() {
  const list = $("conversations");
  list.replaceChildren();
  const sorted = [...state.conversations.values()].sort((a, b) =>
    String(b.last_message_at || b.created_at || "").localeCompare(String(a.last_message_at || a.created_at || "")));
  for (const summary of sorted) {
    const item = document.createElement("li");
    item.dataset.conversationId = summary.conversation_id;
    item.textContent = conversationName(summary);
    if (summary.conversation_id === state.current) item.classList.add("active");
    item.addEventListener("click", () => openConversation(summary.conversation_id));
    list.append(item);
  }
}

async function onOpenChat(event) {
  event.preventDefault();
  const peer = $("new-chat-peer").value.trim();
  if (!peer) return;
  let conversation;
  try {
    conversation = await state.api.openDirect(peer);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 422)) throw error;
    // A Message Service before direct conversations: a plain two-member one.
    conversation = await state.api.call(state.api.messages, "/v1/conversations", { method: "POST", body: { members: [peer] } });
  }
  state.conversations.set(conversation.conversation_id, conversation);
  rememberConversation(conversation.conversation_id);
  $("new-chat-peer").value = "";
  renderConversations();
  await openConversation(conversation.conversation_id);
}

async function openConversation(id) {
  state.current = id;
  rememberConversation(id);
  const summary = state.conversations.get(id);
  $("conversation-title").textContent = summary ? conversationName(summary) : id;
  $("conversation-title").dataset.conversationId = id;
  renderConversations();
  const history = state.messages.get(id) || new Map();
  state.messages.set(id, history);
  let after = 0;
  for (;;) {
    const page = await state.api.history(id, after);
    for (const message of page.messages) history.set(message.message_id, message);
    if (page.messages.length < 100) break;
    after = page.messages[page.messages.length - 1].seq;
  }
  renderMessages();
}

// --- messages --------------------------------------------------------------------------------

function renderMessages() {
  const list = $("messages");
  list.replaceChildren();
  const history = state.messages.get(state.current);
  if (!history) return;
  for (const message of [...history.values()].sort((a, b) => a.seq - b.seq)) list.append(messageItem(message));
  list.scrollTop = list.scrollHeight;
}

function messageItem(message) {
  const item = document.createElement("li");
  item.dataset.messageId = message.message_id;
  item.dataset.seq = message.seq;
  if (message.sender === state.me.user_id) item.classList.add("mine");
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `#${message.seq} ${message.sender} · ${new Date(message.created_at).toLocaleTimeString()}`;
  item.append(meta);
  if (message.deleted) {
    item.append("(deleted)");
    return item;
  }
  if (message.text) {
    const text = document.createElement("div");
    text.className = "text";
    text.textContent = message.text;
    item.append(text);
  }
  for (const media of message.media || []) {
    if (!state.media.has(media.media_id)) state.media.set(media.media_id, { ...media });
    item.append(renderMedia(state, media));
  }
  return item;
}

function addMessage(message) {
  const history = state.messages.get(message.conversation_id) || new Map();
  state.messages.set(message.conversation_id, history);
  const fresh = !history.has(message.message_id);
  history.set(message.message_id, message);
  const summary = state.conversations.get(message.conversation_id);
  if (!summary) {
    rememberConversation(message.conversation_id);
    state.api.conversation(message.conversation_id).then((c) => { state.conversations.set(c.conversation_id, c); renderConversations(); }, () => {});
  } else {
    summary.last_seq = Math.max(summary.last_seq || 0, message.seq);
    summary.last_message_at = message.created_at;
    renderConversations();
  }
  if (fresh && message.conversation_id === state.current) renderMessages();
}

// --- the WebSocket ---------------------------------------------------------------------------

function connect(delay = 500) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/ws?token=${encodeURIComponent(state.me.token)}`);
  state.socket = socket;
  socket.onopen = () => { $("ws-state").textContent = "online"; delay = 500; };
  socket.onclose = async (event) => {
    $("ws-state").textContent = "offline";
    for (const pending of state.pendingSends.values()) pending.reject(new Error("connection closed"));
    state.pendingSends.clear();
    if (event.code === 4001) {
      // The token expired (the tab slept through the renewal): a new one, then reconnect.
      await renewToken().catch((error) => console.warn("token renewal failed", error));
    }
    setTimeout(() => connect(Math.min(delay * 2, 15000)), delay);
  };
  socket.onmessage = (event) => {
    const frame = JSON.parse(event.data);
    if (frame.type === "message") {
      addMessage(frame.message);
      socket.send(JSON.stringify({ type: "received", message_ids: [frame.message.message_id] }));
    } else if (frame.type === "media_update") {
      updateMedia(state, frame);
    } else if (frame.type === "message_deleted") {
      const history = state.messages.get(frame.conversation_id);
      const message = history && history.get(frame.message_id);
      if (message) { history.set(frame.message_id, { ...message, deleted: true, text: null, media: [] }); renderMessages(); }
    } else if (frame.type === "sent" || (frame.type === "error" && frame.client_msg_id)) {
      const pending = state.pendingSends.get(frame.client_msg_id);
      state.pendingSends.delete(frame.client_msg_id);
      if (pending) frame.type === "sent" ? pending.resolve(frame) : pending.reject(new ApiError(0, frame.code, frame.message));
    }
  };
}

// `unavailable`: the Message Service did not answer in time; the message may be stored anyway.
// Sending again with the same client_msg_id is safe (a replay answers `sent` with the first).
async function sendWithRetries(frame, attempts = 4) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await sendFrame(frame);
    } catch (error) {
      if (error.code !== "unavailable" || attempt >= attempts) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempt));
    }
  }
}

function sendFrame(frame) {
  return new Promise((resolve, reject) => {
    if (!state.socket || state.socket.readyState !== WebSocket.OPEN) { reject(new Error("not connected")); return; }
    state.pendingSends.set(frame.client_msg_id, { resolve, reject });
    state.socket.send(JSON.stringify({ type: "send", ...frame }));
  });
}

// --- sending ---------------------------------------------------------------------------------

function uploadRow(file) {
  const row = document.createElement("div");
  row.className = "upload";
  row.dataset.filename = file.name;
  const label = document.createElement("span");
  const bar = document.createElement("progress");
  bar.max = Math.max(1, file.size);
  bar.value = 0;
  row.append(label, " ", bar);
  $("uploads").append(row);
  return {
    row,
    update({ phase, sent, total }) {
      if (phase !== row.dataset.phase) console.info(`upload ${file.name}: ${phase}`);
      label.textContent = `${file.name}: ${phase} ${Math.round((100 * sent) / Math.max(1, total))}%`;
      bar.value = sent;
      row.dataset.phase = phase;
    },
  };
}

async function onSend(event) {
  event.preventDefault();
  if (!state.current) return;
  const conversation_id = state.current;
  const text = $("composer-text").value;
  const files = [...$("composer-file").files];
  $("composer-text").value = "";
  $("composer-file").value = "";
  const media = [];
  for (const file of files) {
    const row = uploadRow(file);
    try {
      const [uploaded, thumbnail] = await Promise.all([uploadFile(state.api, file, row.update), inlineThumbnail(file)]);
      state.lastUpload = uploaded;
      media.push(thumbnail ? { media_id: uploaded.media_id, thumbnail } : { media_id: uploaded.media_id });
      row.row.remove();
    } catch (error) {
      row.row.dataset.phase = "failed";
      row.row.textContent = `${file.name}: ${error.message}`;
      return;
    }
  }
  if (!text && media.length === 0) return;
  const client_msg_id = crypto.randomUUID();
  try {
    const sent = await sendWithRetries({ client_msg_id, conversation_id, text: text || null, media });
    // The sending device gets `sent`, not the message (its other devices get the message):
    // read it back so it shows with its seq and time.
    const page = await state.api.history(conversation_id, sent.seq - 1);
    for (const message of page.messages) if (message.seq === sent.seq) addMessage(message);
  } catch (error) {
    const note = document.createElement("div");
    note.className = "upload error";
    note.dataset.phase = "not-sent";
    note.textContent = `Not sent: ${error.message}`;
    $("uploads").append(note);
  }
}

function showResumable() {
  const box = $("resumable");
  const unfinished = unfinishedUploads();
  box.replaceChildren();
  if (unfinished.length === 0) return;
  const note = document.createElement("p");
  note.className = "note";
  note.textContent = `Unfinished uploads (pick the same file again to resume): ${unfinished.map((u) => u.name).join(", ")}`;
  box.append(note);
}

start();
