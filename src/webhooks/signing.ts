// Webhook signatures: foreman's original X-Foreman-Signature (HMAC-SHA256 of the body, hex) and the
// Standard Webhooks headers (HMAC-SHA256 of "id.timestamp.body", base64), from one key. A secret
// written as whsec_<base64> is decoded as Standard Webhooks defines; any other secret is used as
// its UTF-8 bytes.

import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";

export function secretKey(secret: string): Uint8Array {
  if (secret.startsWith("whsec_")) return Buffer.from(secret.slice("whsec_".length), "base64");
  return new TextEncoder().encode(secret);
}

export function signatureHeaders(
  key: Uint8Array,
  msg: { id: string; timestamp: number; body: string },
): Record<string, string> {
  const hex = createHmac("sha256", key).update(msg.body).digest("hex");
  const b64 = createHmac("sha256", key).update(`${msg.id}.${msg.timestamp}.${msg.body}`).digest(
    "base64",
  );
  return {
    "x-foreman-signature": `sha256=${hex}`,
    "webhook-signature": `v1,${b64}`,
  };
}
