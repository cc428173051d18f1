// The simulator's options (what OllamaSim.start takes) and the settings they resolve to, with
// Ollama's defaults: OLLAMA_MAX_LOADED_MODELS, OLLAMA_KEEP_ALIVE, OLLAMA_MAX_QUEUE and so on.

import { parseKeepAlive } from "./bind.ts";
import { fullName } from "./names.ts";

const DEFAULT_MODELS = ["tiny-a:latest", "tiny-b:latest", "tiny-c:latest", "embed-e:latest"];

/** Options for {@link OllamaSim.start}. Times are in milliseconds. */
export interface SimOptions {
  /** Port to listen on; 0 (the default) picks a free one. */
  port?: number;
  /** Address to listen on (default 127.0.0.1). The Host check applies only on loopback, as in Ollama. */
  hostname?: string;
  /** Models on disk (default tiny-a, tiny-b, tiny-c, embed-e). A name without a tag gets ":latest";
   * a name containing "embed" is an embedding-only model. */
  models?: string[];
  /** Time a model takes to load (default 20). */
  loadMs?: number;
  /** Delay before each generated chunk (default 2; 0 sends chunks as fast as they are read). */
  tokenMs?: number;
  /** Chunks per answer when the request sets no options.num_predict (default 8). */
  tokens?: number;
  /** OLLAMA_MAX_LOADED_MODELS (default 2). */
  maxLoaded?: number;
  /** OLLAMA_KEEP_ALIVE: seconds, or a Go duration such as "5m" (default "5m"). */
  defaultKeepAlive?: string | number;
  /** What GET /api/version answers (default "0.11.4"). */
  version?: string;
  /** Length of embedding vectors (default 8). */
  dimensions?: number;
  /** OLLAMA_MAX_QUEUE: requests waiting for the scheduler beyond this many get a 503 (default 512). */
  maxQueue?: number;
  /** Capabilities of particular models, keyed by name (a name without a tag gets ":latest"), as
   * /api/show lists them. Others get ["completion", "tools", "thinking"], or ["embedding"] when
   * the name contains "embed". Chat and generate refuse think, tools or suffix on a model without
   * "thinking", "tools" or "insert", in Ollama's words. */
  capabilities?: Record<string, SimCapability[]>;
  /** Makes the simulated model loop on one token (answers read "w1 w1 w1 …"), as greedy decoding
   * on a tiny model does, so that Ollama 0.11.4's token-repeat limit applies: an answer longer than
   * 31 tokens stops after the 31st identical chunk with no done:true chunk (status 200; with
   * stream:false the body has done:false and no metrics). Off by default: answers are "w1 w2 …",
   * which never repeat, and always end with done:true. */
  repeatLimit?: boolean;
  /** Pretends the registry is reachable, so /api/pull and /api/push succeed. Off by default: like an
   * Ollama without network (the real-Ollama tier's), they fail with a DNS error. */
  online?: boolean;
}

/** A model capability as Ollama 0.11.4's /api/show lists it. */
export type SimCapability = "completion" | "tools" | "insert" | "vision" | "embedding" | "thinking";

export interface Config {
  hostname: string;
  models: string[];
  loadMs: number;
  tokenMs: number;
  tokens: number;
  maxLoaded: number;
  keepAliveMs: number;
  version: string;
  dimensions: number;
  maxQueue: number;
  /** Lower-cased full name → capabilities. */
  capabilities: Map<string, string[]>;
  repeatLimit: boolean;
  online: boolean;
}

/** The settings a simulator runs with; throws a RangeError naming an option out of range. */
export function toConfig(opts: SimOptions): Config {
  const nonNegative = (name: string, v: number | undefined, fallback: number) => {
    const n = v ?? fallback;
    if (!Number.isFinite(n) || n < 0) {
      throw new RangeError(`Cannot start the Ollama simulator: ${name} ${n} is not >= 0`);
    }
    return n;
  };
  const keepAlive = opts.defaultKeepAlive ?? "5m";
  let keepAliveMs: number;
  try {
    keepAliveMs = parseKeepAlive(keepAlive);
  } catch (e) {
    throw new RangeError(
      `Cannot start the Ollama simulator: defaultKeepAlive ${JSON.stringify(keepAlive)} is invalid`,
      { cause: e },
    );
  }
  return {
    hostname: opts.hostname ?? "127.0.0.1",
    models: opts.models ?? DEFAULT_MODELS,
    loadMs: nonNegative("loadMs", opts.loadMs, 20),
    tokenMs: nonNegative("tokenMs", opts.tokenMs, 2),
    tokens: Math.max(1, Math.trunc(nonNegative("tokens", opts.tokens, 8))),
    maxLoaded: Math.max(1, Math.trunc(nonNegative("maxLoaded", opts.maxLoaded, 2))),
    keepAliveMs,
    version: opts.version ?? "0.11.4",
    dimensions: Math.max(1, Math.trunc(nonNegative("dimensions", opts.dimensions, 8))),
    maxQueue: Math.max(1, Math.trunc(nonNegative("maxQueue", opts.maxQueue, 512))),
    capabilities: new Map(
      Object.entries(opts.capabilities ?? {}).map(([k, v]) => [fullName(k).toLowerCase(), v]),
    ),
    repeatLimit: opts.repeatLimit ?? false,
    online: opts.online ?? false,
  };
}
