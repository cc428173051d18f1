// Order statistics for the benchmark: percentiles of one run's samples, and the median of a figure
// over repeated runs, which is what the report publishes so that one noisy round cannot set it.

/** The q-quantile (0..1) of `samples` by linear interpolation; NaN for none. */
export function quantile(samples: readonly number[], q: number): number {
  return sortedQuantile([...samples].sort((a, b) => a - b), q);
}

/** quantile() of samples sorted already (ascending), for curves that read many quantiles. */
export function sortedQuantile(sorted: readonly number[], q: number): number {
  const at = (sorted.length - 1) * q;
  const lo = sorted[Math.floor(at)];
  const hi = sorted[Math.ceil(at)];
  if (lo === undefined || hi === undefined) return NaN;
  return lo + (hi - lo) * (at - Math.floor(at));
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5);
}

/** What one batch of timed operations came to. Latencies in ms. */
export interface Batch {
  count: number;
  errors: number;
  p50: number;
  p99: number;
  max: number;
  /** Operations per second over the batch's wall time. */
  rate: number;
}

export function summarize(latencies: readonly number[], wallMs: number, errors = 0): Batch {
  return {
    count: latencies.length,
    errors,
    p50: quantile(latencies, 0.5),
    p99: quantile(latencies, 0.99),
    max: latencies.length ? Math.max(...latencies) : NaN,
    rate: wallMs > 0 ? latencies.length / (wallMs / 1000) : NaN,
  };
}

/** Median of each field over rounds. */
export function medianBatch(rounds: readonly Batch[]): Batch {
  const pick = (k: keyof Batch) => median(rounds.map((r) => r[k]));
  return {
    count: rounds.reduce((n, r) => n + r.count, 0),
    errors: rounds.reduce((n, r) => n + r.errors, 0),
    p50: pick("p50"),
    p99: pick("p99"),
    max: pick("max"),
    rate: pick("rate"),
  };
}

/** `n` evenly spaced quantiles of `samples` (for plots), from q=0 to q=maxQ. */
export function quantileCurve(samples: readonly number[], n = 100, maxQ = 0.999): number[][] {
  const sorted = [...samples].sort((a, b) => a - b);
  const out: number[][] = [];
  for (let i = 0; i <= n; i++) {
    const q = (i / n) * maxQ;
    out.push([q, sortedQuantile(sorted, q)]);
  }
  return out;
}
