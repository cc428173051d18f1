// The load generator: a closed loop of `concurrency` callers sharing a fixed number of operations,
// each timed on its own. Every operation and the whole batch have deadlines, so a stuck server
// ends a benchmark with an error instead of hanging it.

export interface LoopResult {
  /** Latency of each successful operation, ms, in completion order. */
  latencies: number[];
  errors: number;
  /** Wall time of the batch (warm-up excluded), ms. */
  wallMs: number;
  /** The first error seen, for the report. */
  firstError?: string;
}

export interface LoopOptions {
  concurrency: number;
  /** Timed operations. */
  count: number;
  /** Untimed operations first, to open connections and warm JIT on both sides. */
  warmup?: number;
  /** Deadline for the whole batch, ms (default 120 000). */
  deadlineMs?: number;
}

/** Runs `op(i)` `count` times with `concurrency` in flight; op resolves with its own latency or
 * undefined to be timed from call to settle. */
export async function closedLoop(
  op: (i: number, signal: AbortSignal) => Promise<number | void>,
  options: LoopOptions,
): Promise<LoopResult> {
  const deadline = AbortSignal.timeout(options.deadlineMs ?? 120_000);
  const run = async (total: number, record: boolean) => {
    const latencies: number[] = [];
    let errors = 0;
    let firstError: string | undefined;
    let next = 0;
    const worker = async () => {
      while (next < total && !deadline.aborted) {
        const i = next++;
        const t0 = performance.now();
        try {
          const own = await op(i, AbortSignal.any([deadline, AbortSignal.timeout(30_000)]));
          if (record) latencies.push(typeof own === "number" ? own : performance.now() - t0);
        } catch (err) {
          errors++;
          firstError ??= err instanceof Error ? err.message : String(err);
        }
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: Math.min(options.concurrency, total) }, worker));
    const wallMs = performance.now() - t0;
    if (deadline.aborted) {
      errors += total - latencies.length - errors;
      firstError ??= "batch deadline passed";
    }
    return { latencies, errors, wallMs, firstError };
  };
  if (options.warmup) await run(options.warmup, false);
  return await run(options.count, true);
}

/** POSTs JSON and reads the whole answer; throws on a non-2xx status. */
export async function postJson(
  url: string,
  body: string,
  headers: Record<string, string>,
  signal: AbortSignal,
): Promise<Response> {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body,
    signal,
  });
  if (!res.ok) {
    const text = await res.text().catch(() => "");
    throw new Error(`POST ${new URL(url).pathname} answered ${res.status}: ${text.slice(0, 200)}`);
  }
  return res;
}

/** Reads an NDJSON stream: time to its first bytes and the arrival of each line. */
export async function readStream(
  res: Response,
  t0: number,
): Promise<{ firstMs: number; lines: number; firstLineAt: number; lastLineAt: number }> {
  const reader = res.body!.getReader();
  let firstMs = NaN;
  let lines = 0;
  let firstLineAt = NaN;
  let lastLineAt = NaN;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    const now = performance.now();
    if (Number.isNaN(firstMs)) firstMs = now - t0;
    let n = 0;
    for (let i = 0; i < value.byteLength; i++) if (value[i] === 10) n++;
    if (n > 0) {
      if (lines === 0) firstLineAt = now;
      lines += n;
      lastLineAt = now;
    }
  }
  return { firstMs, lines, firstLineAt, lastLineAt };
}
