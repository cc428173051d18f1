// Runs the same batch against the simulator directly and through foreman, round after round in
// alternating order (so drift in machine load falls on both paths alike), and keeps each round's
// figures plus every latency sample for the plot.

import type { LoopResult } from "./load.ts";
import { type Batch, median, medianBatch, summarize } from "./stats.ts";

export type Path = "direct" | "foreman";

export interface Comparison {
  direct: Batch;
  foreman: Batch;
  /** foreman − direct, medians over rounds (ms). */
  addedP50: number;
  addedP99: number;
  /** foreman rate ÷ direct rate. */
  rateRatio: number;
  rounds: { direct: Batch; foreman: Batch }[];
  samples: { direct: number[]; foreman: number[] };
  firstError?: string;
}

export async function compare(
  rounds: number,
  batch: (path: Path) => Promise<LoopResult>,
): Promise<Comparison> {
  const out: { direct: Batch; foreman: Batch }[] = [];
  const samples = { direct: [] as number[], foreman: [] as number[] };
  let firstError: string | undefined;
  for (let r = 0; r < rounds; r++) {
    const order: Path[] = r % 2 === 0 ? ["direct", "foreman"] : ["foreman", "direct"];
    const round = {} as { direct: Batch; foreman: Batch };
    for (const path of order) {
      const res = await batch(path);
      round[path] = summarize(res.latencies, res.wallMs, res.errors);
      samples[path].push(...res.latencies);
      firstError ??= res.firstError;
    }
    out.push(round);
  }
  const direct = medianBatch(out.map((r) => r.direct));
  const foreman = medianBatch(out.map((r) => r.foreman));
  const diffs = (k: "p50" | "p99") => median(out.map((r) => r.foreman[k] - r.direct[k]));
  return {
    direct,
    foreman,
    addedP50: diffs("p50"),
    addedP99: diffs("p99"),
    rateRatio: foreman.rate / direct.rate,
    rounds: out,
    samples,
    firstError,
  };
}
