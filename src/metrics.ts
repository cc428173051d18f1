// In-process counters and histograms rendered in the Prometheus text format for GET /metrics.
// Gauges that mirror the database (queue depth) are read at scrape time instead of being kept in
// step by hand.

type Labels = Record<string, string>;

const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800];

function labelText(labels: Labels): string {
  const parts = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n")}"`
  );
  return parts.length ? `{${parts.join(",")}}` : "";
}

class Counter {
  readonly values = new Map<string, { labels: Labels; value: number }>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Labels = {}, by = 1): void {
    const key = labelText(labels);
    const entry = this.values.get(key) ?? { labels, value: 0 };
    entry.value += by;
    this.values.set(key, entry);
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelText(labels))?.value ?? 0;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    for (const { labels, value } of this.values.values()) {
      lines.push(`${this.name}${labelText(labels)} ${value}`);
    }
    return lines.join("\n");
  }
}

interface HistogramSeries {
  labels: Labels;
  counts: number[];
  sum: number;
  count: number;
}

function emptySeries(labels: Labels): HistogramSeries {
  return { labels, counts: new Array<number>(DURATION_BUCKETS.length).fill(0), sum: 0, count: 0 };
}

class Histogram {
  /** Observations by label set, in the order each set was first seen. */
  readonly series = new Map<string, HistogramSeries>();
  constructor(readonly name: string, readonly help: string) {}
  /** Starts the series of `labels` at zero, so it is exported before its first observation. */
  declare(labels: Labels = {}): void {
    const key = labelText(labels);
    if (!this.series.has(key)) this.series.set(key, emptySeries(labels));
  }
  observe(seconds: number, labels: Labels = {}): void {
    this.declare(labels);
    const s = this.series.get(labelText(labels))!;
    for (let i = 0; i < DURATION_BUCKETS.length; i++) {
      if (seconds <= DURATION_BUCKETS[i]!) s.counts[i]!++;
    }
    s.sum += seconds;
    s.count++;
  }
  render(): string {
    const lines = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    // Without a declared series, one unlabelled series of zeroes keeps the name exported.
    const all = this.series.size > 0 ? this.series.values() : [emptySeries({})];
    for (const { labels, counts, sum, count } of all) {
      const bucket = (le: string) => labelText({ ...labels, le });
      DURATION_BUCKETS.forEach((le, i) =>
        lines.push(`${this.name}_bucket${bucket(String(le))} ${counts[i]}`)
      );
      lines.push(`${this.name}_bucket${bucket("+Inf")} ${count}`);
      lines.push(
        `${this.name}_sum${labelText(labels)} ${sum}`,
        `${this.name}_count${labelText(labels)} ${count}`,
      );
    }
    return lines.join("\n");
  }
}

/** A gauge whose samples are computed when scraped. */
export interface GaugeSource {
  name: string;
  help: string;
  read(): { labels?: Labels; value: number }[];
}

export class Metrics {
  readonly jobsFinished = new Counter(
    "foreman_jobs_finished_total",
    "Jobs that reached a terminal state, by outcome and endpoint.",
  );
  readonly jobWait = new Histogram(
    "foreman_job_wait_seconds",
    "Time from submission until the worker took the job, by endpoint.",
  );
  readonly jobRun = new Histogram(
    "foreman_job_run_seconds",
    "Time the worker spent on a job (loading and working), by endpoint.",
  );
  readonly swaps = new Counter(
    "foreman_model_swaps_total",
    "Worker model loads that replaced another worker model.",
  );
  readonly loads = new Counter(
    "foreman_model_loads_total",
    "Worker model loads requested by foreman, by model.",
  );
  readonly webhookDeliveries = new Counter(
    "foreman_webhook_deliveries_total",
    "Webhook delivery attempts, by outcome (delivered, retry, dead).",
  );
  readonly embedRequests = new Counter(
    "foreman_embed_requests_total",
    "Embedding requests passed straight to the target, by route and status.",
  );
  readonly httpRequests = new Counter(
    "foreman_http_requests_total",
    "HTTP requests answered, by status class.",
  );
  readonly gauges: GaugeSource[] = [];

  render(): string {
    const parts = [
      this.jobsFinished.render(),
      this.jobWait.render(),
      this.jobRun.render(),
      this.swaps.render(),
      this.loads.render(),
      this.webhookDeliveries.render(),
      this.embedRequests.render(),
      this.httpRequests.render(),
    ];
    for (const g of this.gauges) {
      const lines = [`# HELP ${g.name} ${g.help}`, `# TYPE ${g.name} gauge`];
      for (const sample of g.read()) {
        lines.push(`${g.name}${labelText(sample.labels ?? {})} ${sample.value}`);
      }
      parts.push(lines.join("\n"));
    }
    return parts.join("\n") + "\n";
  }
}
