// The HTTP side of the contract (API.md): one small client per signed-in user.

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

export async function loadConfig() {
  const response = await fetch("/config.json", { cache: "no-store" });
  if (!response.ok) throw new ApiError(response.status, "no_config", "the gateway sent no /config.json");
  return response.json();
}

export async function devLogin(userId, deviceId) {
  const response = await fetch("/dev/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ user_id: userId, device_id: deviceId || "default" }),
  });
  return readJson(response);
}

async function readJson(response) {
  if (response.status === 204) return null;
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const error = body && body.error ? body.error : {};
    throw new ApiError(response.status, error.code, error.message);
  }
  return body;
}

export class Api {
  constructor(config, token) {
    this.media = config.media_url;
    this.messages = config.message_url;
    this.token = token;
  }

  async call(base, path, { method = "GET", body } = {}) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (error) {
      // A refused cross-origin request (no CORS on the service) looks exactly like this.
      throw new ApiError(0, "network_error", `${base} cannot be reached from this page (${error.message})`);
    }
    return readJson(response);
  }

  // Media Service
  createUpload(slot) { return this.call(this.media, "/v1/media/uploads", { method: "POST", body: slot }); }
  proof(mediaId, proof) { return this.call(this.media, `/v1/media/${mediaId}/proof`, { method: "POST", body: { proof } }); }
  signParts(mediaId, numbers) { return this.call(this.media, `/v1/media/${mediaId}/parts`, { method: "POST", body: { part_numbers: numbers } }); }
  listParts(mediaId) { return this.call(this.media, `/v1/media/${mediaId}/parts`); }
  complete(mediaId, parts) { return this.call(this.media, `/v1/media/${mediaId}/complete`, { method: "POST", body: { parts } }); }
  mediaDocument(mediaId) { return this.call(this.media, `/v1/media/${mediaId}`); }
  downloadUrl(mediaId, variant = "original") {
    return this.call(this.media, `/v1/media/${mediaId}/url?variant=${encodeURIComponent(variant)}`);
  }

  // Message Service
  listConversations(before) {
    const query = before ? `?limit=50&before=${encodeURIComponent(before)}` : "?limit=50";
    return this.call(this.messages, `/v1/conversations${query}`);
  }
  openDirect(peer) {
    return this.call(this.messages, "/v1/conversations", { method: "POST", body: { members: [peer], direct: true } });
  }
  conversation(id) { return this.call(this.messages, `/v1/conversations/${id}`); }
  history(id, after = 0) { return this.call(this.messages, `/v1/conversations/${id}/messages?after=${after}&limit=100`); }
}
