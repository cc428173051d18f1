// Runs the same batch against the simulator directly and through foreman (or several systems),
// round after round in rotating order (so drift in machine load falls on every path alike), and
// keeps each round's figures plus every latency sample for the plot.

import type { LoopResult } from "./load.ts";
import { type Batch, median, medianBatch, summarize } from "./stats.ts";

export type Path = "direct" | "foreman";

/**
 * One system against the baseline measured in the same rounds. The fields keep the names of the
 * main comparison: `direct` is the baseline, `foreman` the system compared with it (a peer proxy
 * in the peers section).
 */
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
  return (await compareSystems(rounds, ["direct", "foreman"] as const, batch)).foreman;
}

/**
 * Runs `batch` for every system in each round, the order rotated by one each round, and compares
 * each system after the first with the first (the baseline) round by round.
 */
export async function compareSystems<S extends string>(
  rounds: number,
  systems: readonly S[],
  batch: (system: S) => Promise<LoopResult>,
): Promise<Record<S, Comparison>> {
  const out: Record<string, Batch>[] = [];
  const samples: Record<string, number[]> = {};
  const errors: Record<string, string | undefined> = {};
  for (const s of systems) samples[s] = [];
  for (let r = 0; r < rounds; r++) {
    const order = systems.map((_, i) => systems[(i + r) % systems.length]!);
    const round: Record<string, Batch> = {};
    for (const s of order) {
      const res = await batch(s);
      round[s] = summarize(res.latencies, res.wallMs, res.errors);
      samples[s]!.push(...res.latencies);
      errors[s] ??= res.firstError;
    }
    out.push(round);
  }
  const base = systems[0]!;
  const result = {} as Record<S, Comparison>;
  for (const s of systems) {
    const pairs = out.map((r) => ({ direct: r[base]!, foreman: r[s]! }));
    const direct = medianBatch(pairs.map((r) => r.direct));
    const foreman = medianBatch(pairs.map((r) => r.foreman));
    const diffs = (k: "p50" | "p99") => median(pairs.map((r) => r.foreman[k] - r.direct[k]));
    result[s] = {
      direct,
      foreman,
      addedP50: diffs("p50"),
      addedP99: diffs("p99"),
      rateRatio: foreman.rate / direct.rate,
      rounds: pairs,
      samples: { direct: samples[base]!, foreman: samples[s]! },
      firstError: errors[s] ?? errors[base],
    };
  }
  return result;
}
