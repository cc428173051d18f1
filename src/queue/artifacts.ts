// A job's artifacts: the files a done job produced (the target's completion, for one), stored with
// the transition that completes it and read by job views, the artifact route and the done event.
// The store writes them inside that transition's transaction (`store.artifacts`).

import type { Db } from "./db.ts";

export interface ArtifactMeta {
  name: string;
  contentType: string;
  size: number;
  sha256: string;
}

export interface Artifact extends ArtifactMeta {
  body: Uint8Array<ArrayBuffer>;
}

/** An artifact as a job's view shows it: its bytes only when they are inlined. */
export interface ShownArtifact extends ArtifactMeta {
  body?: Uint8Array<ArrayBuffer>;
}

export class Artifacts {
  readonly #db: Db;

  constructor(db: Db) {
    this.#db = db;
  }

  /**
   * Stores `artifacts` as job `jobId`'s. The store calls it inside the transaction of the
   * transition that completes the job, so a done job never lacks its artifacts.
   */
  add(jobId: string, artifacts: readonly Artifact[]): void {
    for (const a of artifacts) {
      this.#db.stmt(
        `INSERT INTO artifacts (job_id, name, content_type, size, sha256, body)
         VALUES (?, ?, ?, ?, ?, ?)`,
      ).run(jobId, a.name, a.contentType, a.size, a.sha256, a.body);
    }
  }

  /** The descriptors (never the bytes) of job `jobId`'s artifacts. */
  list(jobId: string): ArtifactMeta[] {
    return this.of([jobId]).get(jobId) ?? [];
  }

  /** The descriptors (never the bytes) of the artifacts of several jobs, in one query. */
  of(jobIds: readonly string[]): Map<string, ArtifactMeta[]> {
    const out = new Map<string, ArtifactMeta[]>();
    if (jobIds.length === 0) return out;
    const rows = this.#db.stmt(
      `SELECT job_id, name, content_type, size, sha256 FROM artifacts
       WHERE job_id IN (SELECT value FROM json_each(?)) ORDER BY job_id, name`,
    ).all(JSON.stringify(jobIds));
    for (const r of rows) {
      const list = out.get(String(r.job_id)) ?? [];
      list.push(toArtifactMeta(r));
      out.set(String(r.job_id), list);
    }
    return out;
  }

  /**
   * The artifacts of job `jobId` as its view shows them: the bytes of those of at most
   * `inlineLimit` bytes, the descriptor alone of the others, whose bytes are never read.
   */
  shown(jobId: string, inlineLimit: number): ShownArtifact[] {
    return this.#db.stmt(
      `SELECT name, content_type, size, sha256, CASE WHEN size <= ? THEN body END AS body
       FROM artifacts WHERE job_id = ? ORDER BY name`,
    ).all(inlineLimit, jobId).map((r) => {
      const a: ShownArtifact = toArtifactMeta(r);
      if (r.body != null) a.body = r.body as Uint8Array<ArrayBuffer>;
      return a;
    });
  }

  get(jobId: string, name: string): Artifact | undefined {
    const r = this.#db.stmt(
      "SELECT name, content_type, size, sha256, body FROM artifacts WHERE job_id = ? AND name = ?",
    ).get(jobId, name);
    return r ? toArtifact(r) : undefined;
  }
}

function toArtifactMeta(r: Record<string, unknown>): ArtifactMeta {
  return {
    name: String(r.name),
    contentType: String(r.content_type),
    size: Number(r.size),
    sha256: String(r.sha256),
  };
}

function toArtifact(r: Record<string, unknown>): Artifact {
  return { ...toArtifactMeta(r), body: r.body as Uint8Array<ArrayBuffer> };
}
