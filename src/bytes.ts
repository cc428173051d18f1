// Byte buffers: joining the chunks of a body that foreman keeps whole (a request body, a stored
// answer, an error body): one copy, or none when there is a single chunk.

/** The chunks as one buffer (the one chunk itself when there is only one). */
export function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1) return parts[0] as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}
