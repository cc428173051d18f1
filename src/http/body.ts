// Reading request bodies with a size limit and a deadline, and parsing them as the JSON object
// Ollama's routes expect. Oversized bodies are cut off as they stream in, never buffered whole, and
// a body that stops arriving is given up on: Deno.serve has no body timeout of its own.

import { concat } from "../bytes.ts";
import { HttpError } from "./errors.ts";

/** The bounds on one request body; foreman's Config has both fields. */
export interface BodyLimits {
  /** Largest body accepted, in bytes (FOREMAN_MAX_BODY). */
  maxBody: number;
  /** Time the whole body may take to arrive, in ms (FOREMAN_BODY_TIMEOUT). */
  bodyTimeout: number;
}

/**
 * The whole body, or 413 past `maxBody`, or 408 when it has not all arrived within `bodyTimeout`.
 * The deadline covers the whole body, not the gaps between chunks, so a client that trickles a byte
 * at a time cannot hold the handler either.
 */
export async function readBody(
  req: Request,
  limits: BodyLimits,
): Promise<Uint8Array<ArrayBuffer>> {
  const { maxBody, bodyTimeout } = limits;
  const declared = req.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBody) throw tooLarge(maxBody);
  if (!req.body) return new Uint8Array();
  const parts: Uint8Array[] = [];
  let size = 0;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(tooSlow(bodyTimeout, size, declared)), bodyTimeout);
  });
  const reader = req.body.getReader();
  try {
    while (true) {
      const { done, value } = await Promise.race([reader.read(), late]);
      if (done) break;
      size += value.byteLength;
      if (size > maxBody) throw tooLarge(maxBody);
      parts.push(value);
    }
  } catch (err) {
    reader.cancel().catch(() => {});
    throw err;
  } finally {
    clearTimeout(timer);
  }
  return concat(parts);
}

/**
 * Deepest nesting of arrays and objects accepted in a JSON body. Far beyond any real request, and
 * low enough that rendering the body again (job views, webhook events) cannot exhaust the stack,
 * which turned a job with deeply nested metadata into 500s and a failed job. Go's encoding/json,
 * which Ollama uses, stops at 10000.
 */
export const MAX_JSON_DEPTH = 1000;

/** 400 when JSON `bytes` nest deeper than MAX_JSON_DEPTH; a scan of brackets outside strings. */
export function refuseDeepJson(bytes: Uint8Array): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > MAX_JSON_DEPTH) {
        throw new HttpError(
          400,
          `invalid request body: JSON nested deeper than ${MAX_JSON_DEPTH} levels`,
        );
      }
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
}

function tooSlow(timeout: number, got: number, declared: string | null): HttpError {
  const of = declared === null ? "" : ` of ${declared}`;
  return new HttpError(
    408,
    `request body not received in time: ${got}${of} bytes after ${timeout / 1000}s ` +
      `(FOREMAN_BODY_TIMEOUT)`,
  );
}

function tooLarge(limit: number): HttpError {
  return new HttpError(
    413,
    `request body too large: the limit is ${limit} bytes (FOREMAN_MAX_BODY)`,
  );
}

const decoder = new TextDecoder("utf-8", { fatal: true });

/** Reads a JSON object body, with Ollama-like messages for the usual mistakes. */
export async function readJsonObject(
  req: Request,
  limits: BodyLimits,
): Promise<Record<string, unknown>> {
  return parseJsonObject(await readBody(req, limits));
}

/** Parses body bytes (read by readBody) as a JSON object, or 400 saying what is wrong with them. */
export function parseJsonObject(bytes: Uint8Array): Record<string, unknown> {
  if (bytes.byteLength === 0) throw new HttpError(400, "missing request body");
  refuseDeepJson(bytes);
  let text: string;
  try {
    text = decoder.decode(bytes);
  } catch {
    throw new HttpError(400, "invalid request body: not valid UTF-8");
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new HttpError(
      400,
      `invalid JSON in request body (expected a JSON object): ${(err as Error).message}`,
    );
  }
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new HttpError(400, "invalid request body: expected a JSON object");
  }
  return value as Record<string, unknown>;
}
