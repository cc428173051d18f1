// Webhook signatures: foreman's original X-Foreman-Signature (HMAC-SHA256 of the body, hex) and the
// Standard Webhooks headers (HMAC-SHA256 of "id.timestamp.body", base64), from one key. A secret
// written as whsec_<base64> is decoded strictly, as Standard Webhooks defines it; any other secret
// is used as its UTF-8 bytes. The rules are checked when the configuration loads.

import { Buffer } from "node:buffer";
import { createHmac } from "node:crypto";

const WHSEC = "whsec_";
/** Standard Webhooks keys are 24 to 64 bytes. */
const WHSEC_BYTES = { min: 24, max: 64 };
/** A plain secret is its own key: shorter ones are too easy to guess. */
const PLAIN_MIN_BYTES = 16;

/**
 * Why `secret` cannot sign webhooks, or undefined when it can. The reason never quotes the secret,
 * so it can be shown to the operator as it is.
 */
export function webhookSecretProblem(secret: string): string | undefined {
  if (secret.startsWith(WHSEC)) {
    const b64 = secret.slice(WHSEC.length);
    const key = Buffer.from(b64, "base64");
    // Node's decoder skips stray characters and tolerates missing padding; only a string that is
    // the exact standard encoding of its bytes is taken, so nothing is silently dropped.
    if (b64 === "" || key.toString("base64") !== b64) {
      return "is not whsec_ followed by standard base64 (A-Z a-z 0-9 + /, padded with =)";
    }
    if (key.byteLength < WHSEC_BYTES.min || key.byteLength > WHSEC_BYTES.max) {
      return `decodes to ${key.byteLength} bytes: a whsec_ key must be ` +
        `${WHSEC_BYTES.min} to ${WHSEC_BYTES.max} bytes (Standard Webhooks)`;
    }
    return undefined;
  }
  const bytes = new TextEncoder().encode(secret).byteLength;
  if (bytes < PLAIN_MIN_BYTES) {
    return `is ${bytes} bytes: a plain secret must be at least ${PLAIN_MIN_BYTES} bytes ` +
      `(or whsec_ with ${WHSEC_BYTES.min} to ${WHSEC_BYTES.max} random bytes in base64)`;
  }
  return undefined;
}

/** The HMAC key of a secret that webhookSecretProblem accepts; throws RangeError for any other. */
export function secretKey(secret: string): Uint8Array {
  const problem = webhookSecretProblem(secret);
  if (problem) throw new RangeError(`Cannot use the webhook secret: it ${problem}`);
  if (secret.startsWith(WHSEC)) return Buffer.from(secret.slice(WHSEC.length), "base64");
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
