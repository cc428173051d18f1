// Proxy overhead: the same Ollama requests sent straight to the simulator and through foreman.
// Proxy overhead: the same Ollama requests sent straight to the simulator and through foreman.
// Sync chat (a queued job per request) natively and on /v1, streaming chat (time to first chunk,
// chunks relayed per second) and the /api/embed bypass. Sync chat, time to first chunk and the
// relay ceiling also run through the peers (nginx and a bare Deno proxy) in the same rounds, so
// their floor is on the page.

import { startForeman } from "../../harness/foreman.ts";
import { compare, compareSystems, type Comparison } from "../compare.ts";
import { closedLoop, postJson, readStream } from "../load.ts";
import { ensureNginx, startNginx } from "../nginx.ts";
import { startBareProxy, startSerialProxy, startSimProcess } from "../processes.ts";
import { median } from "../stats.ts";

export interface ProxySizes {
  rounds: number;
  syncC1: number;
  syncC16: number;
  syncC32: number;
  ttfc: number;
  embedC32: number;
  streamRounds: number;
  /** Chunks in the long stream at the simulator's fixed token rate. */
  longChunks: number;
  /** Chunks in the long stream from a simulator that sends as fast as it is read. */
  ceilingChunks: number;
}

export interface StreamRate {
  direct: number;
  foreman: number;
  ratio: number;
  chunks: number;
}

/**
 * The systems measured side by side: the target itself, foreman and the proxies beside it, and
 * `serial`, the bare proxy sending one request at a time (bench/bare_serial.ts): the ceiling of
 * any one-at-a-time worker in front of this simulator (sync chat only; it answers whole).
 */
export type System = "direct" | "foreman" | "nginx" | "bare" | "serial";

export interface Peers {
  /** nginx's version, or why its row is left out. */
  nginx: { version: string } | { skipped: string };
  /** Each system against direct, from the same rotation of rounds (nginx absent when skipped). */
  syncC1: Partial<Record<System, Comparison>>;
  syncC16: Partial<Record<System, Comparison>>;
  ttfc: Partial<Record<System, Comparison>>;
  ceiling: Partial<Record<System, StreamRate>>;
}

export interface ProxyResults {
  syncC1: Comparison;
  /** /v1/chat/completions stream:false at concurrency 1, against the simulator's own /v1. */
  v1SyncC1: Comparison;
  syncC16: Comparison;
  syncC32: Comparison;
  ttfc: Comparison;
  embedC32: Comparison;
  longStream: StreamRate;
  ceilingStream: StreamRate;
  /** The floor: a bare Deno fetch-relay proxy (bench/bare_proxy.ts) in foreman's place. */
  bareSyncC1: Comparison;
  bareTtfc: Comparison;
  /** nginx and the bare Deno proxy beside foreman and direct, rotated round by round. */
  peers: Peers;
}

const MODELS = ["a", "b", "c", "embed-e"];
/** The simulator's fixed token rate: one chunk per millisecond. */
export const TOKEN_MS = 1;

function chat(numPredict: number, stream: boolean): string {
  return JSON.stringify({
    model: "a",
    messages: [{ role: "user", content: "hi" }],
    stream,
    keep_alive: -1,
    options: { num_predict: numPredict },
  });
}

export async function proxyBench(
  sizes: ProxySizes,
  note: (msg: string) => void,
): Promise<ProxyResults> {
  let nginx = await ensureNginx(note);
  const stops: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  };
  try {
    const sim = await startSimProcess({ loadMs: 0, tokenMs: TOKEN_MS, models: MODELS });
    stops.push(sim.stop);
    // Its log goes to a file: read through a pipe, each line would cost the load generator's
    // cores about 0.1 ms (docs/benchmarks.md).
    const fm = await startForeman({
      ollamaUrl: sim.url,
      args: ["--max-queue", "1000000"],
      output: "file",
    });
    stops.push(async () => {
      await fm.stop();
      await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
    });
    let front;
    try {
      front = await peersOf(sim.url, "version" in nginx, stops);
    } catch (err) {
      if (!("version" in nginx)) throw err;
      nginx = { skipped: `nginx ${nginx.version} did not start: ${(err as Error).message}` };
      front = await peersOf(sim.url, false, stops);
    }
    if ("skipped" in nginx) note(`the nginx row is left out: ${nginx.skipped}`);
    const systems = ["direct", "foreman", ...front.names] as System[];
    const serial = await startSerialProxy(sim.url);
    stops.push(serial.stop);
    const withSerial = [...systems, "serial"] as System[];
    note(`systems side by side: ${systems.join(", ")}`);
    const base = (s: System) =>
      s === "direct"
        ? sim.url
        : s === "foreman"
        ? fm.url
        : s === "serial"
        ? serial.url
        : front.urls[s]!;
    const auth = (s: System) => s === "foreman" ? fm.headers() : {};
    const tiny = chat(1, false);
    const syncOp = (s: System) => async (_i: number, signal: AbortSignal) => {
      const res = await postJson(`${base(s)}/api/chat`, tiny, auth(s), signal);
      await res.arrayBuffer();
    };
    const sync = (concurrency: number, count: number) => (s: System) =>
      closedLoop(syncOp(s), { concurrency, count, warmup: Math.max(20, concurrency * 2) });

    note("sync /api/chat stream:false, concurrency 1");
    const syncC1 = await compareSystems(sizes.rounds, withSerial, sync(1, sizes.syncC1));
    note("sync /api/chat stream:false, concurrency 16");
    const syncC16 = await compareSystems(sizes.rounds, withSerial, sync(16, sizes.syncC16));
    note("sync /v1/chat/completions stream:false, concurrency 1");
    const v1Tiny = JSON.stringify({
      model: "a",
      messages: [{ role: "user", content: "hi" }],
      stream: false,
      max_tokens: 1,
    });
    const v1SyncC1 = await compare(sizes.rounds, (p) =>
      closedLoop(async (_i, signal) => {
        await (await postJson(`${base(p)}/v1/chat/completions`, v1Tiny, auth(p), signal))
          .arrayBuffer();
      }, { concurrency: 1, count: sizes.syncC1, warmup: 20 }));
    note("sync /api/chat stream:false, concurrency 32");
    const syncC32 = await compare(sizes.rounds, sync(32, sizes.syncC32));

    note("streaming /api/chat: time to first chunk");
    const short = chat(1, true);
    const ttfc = await compareSystems(
      sizes.rounds,
      systems,
      (s) =>
        closedLoop(async (_i, signal) => {
          const t0 = performance.now();
          const res = await postJson(`${base(s)}/api/chat`, short, auth(s), signal);
          return (await readStream(res, t0)).firstMs;
        }, { concurrency: 1, count: sizes.ttfc, warmup: 20 }),
    );

    note("/api/embed bypass, concurrency 32");
    const embedBody = JSON.stringify({ model: "embed-e", input: "hello world", keep_alive: -1 });
    const embedC32 = await compare(sizes.rounds, (p) =>
      closedLoop(async (_i, signal) => {
        const res = await postJson(`${base(p)}/api/embed`, embedBody, auth(p), signal);
        await res.arrayBuffer();
      }, { concurrency: 32, count: sizes.embedC32, warmup: 64 }));

    note(`long stream: ${sizes.longChunks} chunks at ${TOKEN_MS} ms per token`);
    const longStream = (await streamRates(
      ["direct", "foreman"],
      base,
      auth,
      sizes.streamRounds,
      sizes.longChunks,
    )).foreman!;

    note(`relay ceiling: ${sizes.ceilingChunks} chunks from an unthrottled simulator`);
    const fast = await startSimProcess({ loadMs: 0, tokenMs: 0, models: MODELS });
    stops.push(fast.stop);
    const fastFm = await startForeman({ ollamaUrl: fast.url, output: "file" });
    stops.push(async () => {
      await fastFm.stop();
      await Deno.remove(fastFm.dir, { recursive: true }).catch(() => {});
    });
    const fastFront = await peersOf(fast.url, "version" in nginx, stops);
    const ceiling = await streamRates(
      ["direct", "foreman", ...fastFront.names] as System[],
      (s) => s === "direct" ? fast.url : s === "foreman" ? fastFm.url : fastFront.urls[s]!,
      (s) => s === "foreman" ? fastFm.headers() : {},
      // Each round is short: more of them, so one stalled round cannot set the figure.
      sizes.streamRounds * 2 + 1,
      sizes.ceilingChunks,
    );
    return {
      syncC1: syncC1.foreman,
      syncC16: syncC16.foreman,
      v1SyncC1,
      syncC32,
      ttfc: ttfc.foreman,
      embedC32,
      longStream,
      ceilingStream: ceiling.foreman!,
      bareSyncC1: syncC1.bare,
      bareTtfc: ttfc.bare,
      peers: { nginx, syncC1, syncC16, ttfc, ceiling },
    };
  } finally {
    await stopAll();
  }
}

/** The peer proxies in front of `target`: the bare Deno proxy always, nginx when it is there. */
async function peersOf(
  target: string,
  withNginx: boolean,
  stops: (() => Promise<void>)[],
): Promise<{ names: System[]; urls: Partial<Record<System, string>> }> {
  const names: System[] = [];
  const urls: Partial<Record<System, string>> = {};
  if (withNginx) {
    const n = await startNginx(target);
    stops.push(n.stop);
    names.push("nginx");
    urls.nginx = n.url;
  }
  const bare = await startBareProxy(target);
  stops.push(bare.stop);
  names.push("bare");
  urls.bare = bare.url;
  return { names, urls };
}

/**
 * Lines per second a client receives over one long stream, for each system, median over rounds
 * (the order rotated each round); `ratio` is against the first system.
 */
async function streamRates<S extends string>(
  systems: readonly S[],
  base: (s: S) => string,
  auth: (s: S) => Record<string, string>,
  rounds: number,
  chunks: number,
): Promise<Partial<Record<S, StreamRate>>> {
  const rates = {} as Record<S, number[]>;
  for (const s of systems) rates[s] = [];
  const body = chat(chunks, true);
  // One untimed stream each first, as the other batches warm up: a fresh process's relay code is
  // not yet compiled, and a short stream would be timed mostly before it is.
  for (const s of systems) {
    const res = await postJson(`${base(s)}/api/chat`, body, auth(s), AbortSignal.timeout(120_000));
    await readStream(res, performance.now());
  }
  for (let r = 0; r < rounds; r++) {
    for (const s of systems.map((_, i) => systems[(i + r) % systems.length]!)) {
      const signal = AbortSignal.timeout(120_000);
      const t0 = performance.now();
      const res = await postJson(`${base(s)}/api/chat`, body, auth(s), signal);
      const got = await readStream(res, t0);
      if (got.lines !== chunks + 1) {
        throw new Error(`a ${s} long stream carried ${got.lines} lines, expected ${chunks + 1}`);
      }
      rates[s].push((got.lines - 1) / ((got.lastLineAt - got.firstLineAt) / 1000));
    }
  }
  const direct = median(rates[systems[0]!]);
  const out: Partial<Record<S, StreamRate>> = {};
  for (const s of systems) {
    const v = median(rates[s]);
    out[s] = { direct, foreman: v, ratio: v / direct, chunks };
  }
  return out;
}
