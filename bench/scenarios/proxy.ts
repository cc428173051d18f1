// Proxy overhead: the same Ollama requests sent straight to the simulator and through foreman.
// Sync chat (a queued job per request) natively and on /v1, streaming chat (time to first chunk,
// chunks relayed per second) and the /api/embed bypass.

import { startForeman } from "../../harness/foreman.ts";
import { compare, type Comparison, type Path } from "../compare.ts";
import { closedLoop, postJson, readStream } from "../load.ts";
import { startBareProxy, startSimProcess } from "../processes.ts";
import { median } from "../stats.ts";

export interface ProxySizes {
  rounds: number;
  syncC1: number;
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

export interface ProxyResults {
  syncC1: Comparison;
  /** /v1/chat/completions stream:false at concurrency 1, against the simulator's own /v1. */
  v1SyncC1: Comparison;
  syncC32: Comparison;
  ttfc: Comparison;
  embedC32: Comparison;
  longStream: StreamRate;
  ceilingStream: StreamRate;
  /** The floor: a bare Deno fetch-relay proxy (bench/bare_proxy.ts) in foreman's place. */
  bareSyncC1: Comparison;
  bareTtfc: Comparison;
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
  const sim = await startSimProcess({ loadMs: 0, tokenMs: TOKEN_MS, models: MODELS });
  const fm = await startForeman({ ollamaUrl: sim.url, args: ["--max-queue", "1000000"] });
  try {
    const base = (p: Path) => p === "direct" ? sim.url : fm.url;
    const auth = (p: Path) => p === "direct" ? {} : fm.headers();
    const tiny = chat(1, false);
    const syncOp = (p: Path) => async (_i: number, signal: AbortSignal) => {
      const res = await postJson(`${base(p)}/api/chat`, tiny, auth(p), signal);
      await res.arrayBuffer();
    };

    note("sync /api/chat stream:false, concurrency 1");
    const syncC1 = await compare(
      sizes.rounds,
      (p) => closedLoop(syncOp(p), { concurrency: 1, count: sizes.syncC1, warmup: 20 }),
    );
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
    const syncC32 = await compare(
      sizes.rounds,
      (p) => closedLoop(syncOp(p), { concurrency: 32, count: sizes.syncC32, warmup: 64 }),
    );

    note("streaming /api/chat: time to first chunk");
    const short = chat(1, true);
    const ttfc = await compare(sizes.rounds, (p) =>
      closedLoop(async (_i, signal) => {
        const t0 = performance.now();
        const res = await postJson(`${base(p)}/api/chat`, short, auth(p), signal);
        return (await readStream(res, t0)).firstMs;
      }, { concurrency: 1, count: sizes.ttfc, warmup: 20 }));

    note("/api/embed bypass, concurrency 32");
    const embedBody = JSON.stringify({ model: "embed-e", input: "hello world", keep_alive: -1 });
    const embedC32 = await compare(sizes.rounds, (p) =>
      closedLoop(async (_i, signal) => {
        const res = await postJson(`${base(p)}/api/embed`, embedBody, auth(p), signal);
        await res.arrayBuffer();
      }, { concurrency: 32, count: sizes.embedC32, warmup: 64 }));

    note(`long stream: ${sizes.longChunks} chunks at ${TOKEN_MS} ms per token`);
    const longStream = await streamRate(
      base,
      auth,
      sizes.streamRounds,
      sizes.longChunks,
    );

    note(`relay ceiling: ${sizes.ceilingChunks} chunks from an unthrottled simulator`);
    const fast = await startSimProcess({ loadMs: 0, tokenMs: 0, models: MODELS });
    const fastFm = await startForeman({ ollamaUrl: fast.url });
    let ceilingStream: StreamRate;
    try {
      ceilingStream = await streamRate(
        (p) => p === "direct" ? fast.url : fastFm.url,
        (p) => p === "direct" ? {} : fastFm.headers(),
        sizes.streamRounds,
        sizes.ceilingChunks,
      );
    } finally {
      await fastFm.stop();
      await fast.stop();
      await Deno.remove(fastFm.dir, { recursive: true }).catch(() => {});
    }
    note("the floor: a bare Deno proxy in foreman's place, sync and time to first chunk");
    const bare = await startBareProxy(sim.url);
    let bareSyncC1: Comparison;
    let bareTtfc: Comparison;
    try {
      const via = (p: Path) => p === "direct" ? sim.url : bare.url;
      bareSyncC1 = await compare(sizes.rounds, (p) =>
        closedLoop(async (_i, signal) => {
          await (await postJson(`${via(p)}/api/chat`, tiny, {}, signal)).arrayBuffer();
        }, { concurrency: 1, count: sizes.syncC1, warmup: 20 }));
      bareTtfc = await compare(sizes.rounds, (p) =>
        closedLoop(async (_i, signal) => {
          const t0 = performance.now();
          const res = await postJson(`${via(p)}/api/chat`, short, {}, signal);
          return (await readStream(res, t0)).firstMs;
        }, { concurrency: 1, count: sizes.ttfc, warmup: 20 }));
    } finally {
      await bare.stop();
    }
    return {
      syncC1,
      v1SyncC1,
      syncC32,
      ttfc,
      embedC32,
      longStream,
      ceilingStream,
      bareSyncC1,
      bareTtfc,
    };
  } finally {
    await fm.stop();
    await sim.stop();
    await Deno.remove(fm.dir, { recursive: true }).catch(() => {});
  }
}

/** Lines per second a client receives over one long stream, median over rounds. */
async function streamRate(
  base: (p: Path) => string,
  auth: (p: Path) => Record<string, string>,
  rounds: number,
  chunks: number,
): Promise<StreamRate> {
  const rates: Record<Path, number[]> = { direct: [], foreman: [] };
  const body = chat(chunks, true);
  for (let r = 0; r < rounds; r++) {
    for (const p of (r % 2 === 0 ? ["direct", "foreman"] : ["foreman", "direct"]) as Path[]) {
      const signal = AbortSignal.timeout(120_000);
      const t0 = performance.now();
      const res = await postJson(`${base(p)}/api/chat`, body, auth(p), signal);
      const s = await readStream(res, t0);
      if (s.lines !== chunks + 1) {
        throw new Error(`a ${p} long stream carried ${s.lines} lines, expected ${chunks + 1}`);
      }
      rates[p].push((s.lines - 1) / ((s.lastLineAt - s.firstLineAt) / 1000));
    }
  }
  const direct = median(rates.direct);
  const foreman = median(rates.foreman);
  return { direct, foreman, ratio: foreman / direct, chunks };
}
