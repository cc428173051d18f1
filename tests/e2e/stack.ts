// The end-to-end stack: a real Ollama with the tiny models imported, and a real foreman process in
// front of it. Helpers to talk to both, wait on conditions with a deadline, watch Ollama's own
// /api/ps, and receive webhooks. Each test file builds its own stack so tests cannot disturb another.

import { tinyModel } from "../support/gguf.ts";
import { e2eOllamaBin, type RealOllama, startRealOllama } from "../support/real_ollama.ts";
import { startForeman } from "../../harness/foreman.ts";

/** The Ollama binary when the tier is on; test files pass `ignore: bin === null`. */
export const bin: string | null = e2eOllamaBin();

/** Test options shared by the tier: skipped without Ollama; processes outlive single ops. */
export const e2e = { ignore: bin === null, sanitizeOps: false, sanitizeResources: false };

/** Options that make tiny models repeatable: greedy, short (Ollama aborts after 31 repeats). */
export const DETERMINISTIC = { seed: 1, temperature: 0, num_predict: 12 };

/**
 * Options for a job that runs for seconds (4000 sampled tokens, about 1-3 s on one thread).
 * Sampled with a strong repeat penalty, not greedy: greedy tiny models loop, and Ollama v0.11.4
 * silently ends a response whose token repeats more than 30 times, without a done:true line.
 */
export const LONG = { seed: 7, temperature: 1.5, repeat_penalty: 1.5, num_predict: 4000 };

export type Foreman = Awaited<ReturnType<typeof startForeman>>;

export interface Stack {
  ollama: RealOllama;
  foreman: Foreman;
  /** A fetch to foreman with the bearer token; JSON bodies are stringified. */
  call(path: string, init?: CallInit): Promise<Response>;
  /** A fetch straight to Ollama (for expected answers and its own view of residency). */
  direct(path: string, body?: unknown): Promise<Response>;
  /** Stops foreman, then Ollama; shows both logs if `failed`. */
  close(failed?: boolean): Promise<void>;
}

export interface CallInit {
  method?: string;
  body?: unknown;
  headers?: HeadersInit;
  signal?: AbortSignal;
}

export interface StackOptions {
  /** Models to import; default all four tiny models. */
  models?: string[];
  /** Extra foreman environment (FOREMAN_*). */
  env?: Record<string, string>;
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
  const ollama = await startRealOllama({ bin: bin! });
  let foreman: Foreman | null = null;
  try {
    for (const name of opts.models ?? ["tiny-a", "tiny-b", "tiny-c", "tiny-embed"]) {
      await ollama.importModel(name, tinyModel(name));
    }
    foreman = await startForeman({
      ollamaUrl: ollama.url,
      env: {
        FOREMAN_EMBED_MODEL: "tiny-embed",
        FOREMAN_POLL_INTERVAL: "1s",
        FOREMAN_RETRY_BASE: "200ms",
        ...opts.env,
      },
    });
  } catch (e) {
    console.error(`--- ollama log ---\n${ollama.output().slice(-6000)}`);
    await ollama.stop();
    throw e;
  }
  const f = foreman;
  return {
    ollama,
    foreman: f,
    call(path, init = {}) {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${f.token}`);
      let body: BodyInit | undefined;
      if (init.body !== undefined) {
        body = typeof init.body === "string" ? init.body : JSON.stringify(init.body);
        if (!headers.has("content-type")) headers.set("content-type", "application/json");
      }
      return fetch(`${f.url}${path}`, {
        method: init.method ?? (body === undefined ? "GET" : "POST"),
        headers,
        body,
        signal: init.signal,
      });
    },
    direct(path, body) {
      return fetch(`${ollama.url}${path}`, {
        method: body === undefined ? "GET" : "POST",
        headers: { "content-type": "application/json" },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    },
    async close(failed = false) {
      if (failed) {
        console.error(`--- foreman log ---\n${f.output().slice(-8000)}`);
        console.error(`--- ollama log ---\n${ollama.output().slice(-6000)}`);
      }
      await f.stop().catch(() => {});
      await ollama.stop();
    },
  };
}

/** Runs `fn` with a fresh stack and always tears it down, printing logs when `fn` throws. */
export async function withStack(
  opts: StackOptions,
  fn: (s: Stack) => Promise<void>,
): Promise<void> {
  const s = await startStack(opts);
  let failed = true;
  try {
    await fn(s);
    failed = false;
  } finally {
    await s.close(failed);
  }
}

/** Polls `probe` until it returns a value other than undefined/false, or throws at the deadline. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (e) {
      last = e;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${last}` : ""}`);
}

/** Model names Ollama itself reports as loaded (from its /api/ps), without the ":latest" tag. */
export async function ollamaResident(ollama: RealOllama): Promise<string[]> {
  const ps = await (await fetch(`${ollama.url}/api/ps`)).json();
  return (ps.models as Array<{ name: string }>).map((m) => m.name.replace(/:latest$/, "")).sort();
}

/** Number of model loads Ollama has performed (each starts a runner and logs it). */
export function ollamaLoads(ollama: RealOllama): number {
  return ollama.output().split('msg="starting llama server"').length - 1;
}

/** Samples Ollama's /api/ps every `everyMs` until stopped; returns every distinct sample. */
export function watchResidency(ollama: RealOllama, everyMs = 25) {
  const samples: string[][] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      try {
        samples.push(await ollamaResident(ollama));
      } catch { /* Ollama restarting */ }
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    samples,
    async stop() {
      running = false;
      await loop;
      return samples;
    },
  };
}

/** A webhook receiver on a free loopback port that records every delivery. */
export interface WebhookSink {
  url: string;
  /** host:port, for FOREMAN_WEBHOOK_HOSTS. */
  host: string;
  received: Array<{ headers: Headers; body: string; json: Record<string, unknown> }>;
  close(): Promise<void>;
}

export function startWebhookSink(): WebhookSink {
  const received: WebhookSink["received"] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const body = await req.text();
    received.push({ headers: req.headers, body, json: JSON.parse(body) });
    return new Response(null, { status: 204 });
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return { url: `http://${host}/hook`, host, received, close: () => server.shutdown() };
}

/** Reads an NDJSON response into its parsed lines. */
export async function ndjson(res: Response): Promise<Array<Record<string, unknown>>> {
  const text = await res.text();
  return text.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l));
}
