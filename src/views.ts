// How a job looks from outside: the JSON of GET /jobs/{id}, of each job in GET /jobs and the body
// of a webhook event. All render artifacts the same way (inline up to the limit, a URL always) so a
// receiver and a poller see one shape; a list carries no bodies: no result and no inline artifacts.

import type { ArtifactMeta, JobSummary, MovedJob, WebhookSummary } from "./queue/store.ts";
import type { JobState } from "./queue/states.ts";

export interface ViewOptions {
  publicUrl: string;
  inlineLimit: number;
}

export interface ArtifactView {
  name: string;
  content_type: string;
  size: number;
  sha256: string;
  inline: string | null;
  url: string;
}

const decoder = new TextDecoder();

/** An artifact's descriptor; `inline` only when its bytes are at hand and fit the limit. */
export function artifactView(
  jobId: string,
  a: ArtifactMeta & { body?: Uint8Array },
  o: ViewOptions,
): ArtifactView {
  return {
    name: a.name,
    content_type: a.contentType,
    size: a.size,
    sha256: a.sha256,
    inline: a.body !== undefined && a.size <= o.inlineLimit ? decoder.decode(a.body) : null,
    url: `${o.publicUrl}/jobs/${jobId}/artifacts/${encodeURIComponent(a.name)}`,
  };
}

function time(ms: number | null): string | null {
  return ms === null ? null : new Date(ms).toISOString();
}

/**
 * The completion as an object when it fits the inline limit; otherwise callers follow the URL.
 * A summary (a list) has no result to show.
 */
function resultOf(job: JobSummary & { result?: string | null }, o: ViewOptions): unknown {
  if (job.result == null || job.kind === "sync") return null;
  if (new TextEncoder().encode(job.result).byteLength > o.inlineLimit) return null;
  return JSON.parse(job.result);
}

function metadataOf(job: JobSummary): unknown {
  return job.metadata === null ? null : JSON.parse(job.metadata);
}

/** A job for GET /jobs/{id} (a Job, artifacts with bytes) or a list (a summary, descriptors only). */
export function jobView(
  job: JobSummary & { result?: string | null },
  extra: {
    artifacts: (ArtifactMeta & { body?: Uint8Array })[];
    position: number | null;
    webhook: WebhookSummary | null;
  },
  o: ViewOptions,
): Record<string, unknown> {
  return {
    job_id: job.id,
    kind: job.kind,
    state: job.state,
    endpoint: job.endpoint,
    model: job.model,
    attempt: job.attempt,
    created_at: time(job.createdAt),
    updated_at: time(job.updatedAt),
    started_at: time(job.startedAt),
    finished_at: time(job.finishedAt),
    position: extra.position,
    error: job.error,
    result: resultOf(job, o),
    artifacts: extra.artifacts.map((a) => artifactView(job.id, a, o)),
    metadata: metadataOf(job),
    webhook: extra.webhook === null ? null : {
      url: extra.webhook.url,
      pending: extra.webhook.pending,
      delivered: extra.webhook.delivered,
      dead: extra.webhook.dead,
      last_error: extra.webhook.lastError,
    },
  };
}

/**
 * The webhook event reporting that `job` just entered its current state, from `previous` (null
 * for a new job), with the job's artifacts.
 */
export function eventBody(
  job: MovedJob,
  event: { previous: JobState | null; artifacts: (ArtifactMeta & { body?: Uint8Array })[] },
  o: ViewOptions,
): string {
  const { previous, artifacts } = event;
  const done = job.state === "done";
  return JSON.stringify({
    job_id: job.id,
    state: job.state,
    previous_state: previous,
    timestamp: new Date(job.updatedAt).toISOString(),
    model: job.model,
    attempt: job.attempt,
    error: job.state === "failed" || job.state === "cancelled" ? job.error : null,
    result: done ? resultOf(job, o) : null,
    artifacts: done ? artifacts.map((a) => artifactView(job.id, a, o)) : [],
    metadata: metadataOf(job),
  });
}
