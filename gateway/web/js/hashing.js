// SHA-256 in the browser (SubtleCrypto) and the dedup proof of possession (API.md, /proof).

export function hex(buffer) {
  return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
}

export function base64(buffer) {
  let text = "";
  for (const byte of new Uint8Array(buffer)) text += String.fromCharCode(byte);
  return btoa(text);
}

// SubtleCrypto has no streaming digest: the file is read once, whole (fine up to a few hundred MB).
export async function sha256OfFile(file) {
  return hex(await crypto.subtle.digest("SHA-256", await file.arrayBuffer()));
}

export async function proofFor(file, challenge) {
  const nonce = Uint8Array.from(challenge.nonce.match(/../g), (pair) => parseInt(pair, 16));
  const slice = new Uint8Array(await file.slice(challenge.offset, challenge.offset + challenge.length).arrayBuffer());
  const joined = new Uint8Array(nonce.length + slice.length);
  joined.set(nonce, 0);
  joined.set(slice, nonce.length);
  return hex(await crypto.subtle.digest("SHA-256", joined));
}
