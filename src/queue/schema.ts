// The SQLite schema and its migrations. The version lives in the `meta` table; each migration runs
// once, in order, inside a transaction. CHECK constraints make impossible rows impossible, so a bug
// in a transition fails loudly instead of storing a job nobody can reason about.

import type { DatabaseSync } from "node:sqlite";

/** Each entry brings the schema one version up; tests replay a prefix to build an old database. */
export const MIGRATIONS: readonly string[] = [
  // 1: jobs, artifacts, webhook outbox.
  `
  CREATE TABLE jobs (
    id              TEXT PRIMARY KEY CHECK (length(id) = 26),
    kind            TEXT NOT NULL CHECK (kind IN ('sync', 'async')),
    endpoint        TEXT NOT NULL CHECK (endpoint IN ('chat', 'generate')),
    model           TEXT NOT NULL CHECK (length(model) > 0),
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'loading', 'working', 'done', 'failed', 'cancelled')),
    request         TEXT NOT NULL,
    webhook_url     TEXT,
    metadata        TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    attempt         INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before      INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    result          TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    CHECK ((state IN ('done', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'done' OR result IS NOT NULL),
    CHECK (kind = 'async' OR (webhook_url IS NULL AND idempotency_key IS NULL)),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
  ) STRICT;
  CREATE INDEX jobs_queued_by_model ON jobs (model, id) WHERE state = 'queued';
  CREATE INDEX jobs_queued_fifo ON jobs (id) WHERE state = 'queued';
  CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('loading', 'working');
  CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

  CREATE TABLE artifacts (
    job_id       TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 128),
    content_type TEXT NOT NULL,
    size         INTEGER NOT NULL CHECK (size >= 0),
    sha256       TEXT NOT NULL CHECK (length(sha256) = 64),
    body         BLOB NOT NULL,
    PRIMARY KEY (job_id, name)
  ) STRICT;

  CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    url             TEXT NOT NULL,
    body            TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL))
  ) STRICT;
  CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE state = 'pending';
  CREATE INDEX outbox_by_job ON outbox (job_id, seq);
  `,
  // 2: `held` marks a pending event that waits behind an earlier pending event of its job, so the
  // dispatcher finds the events it can send (and when the next one falls due) through one index
  // instead of walking every held event; existing rows are marked once here.
  `
  ALTER TABLE outbox ADD COLUMN held INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1));
  UPDATE outbox SET held = 1 WHERE state = 'pending' AND EXISTS (
    SELECT 1 FROM outbox p WHERE p.job_id = outbox.job_id AND p.state = 'pending' AND p.seq < outbox.seq);
  DROP INDEX outbox_pending;
  CREATE INDEX outbox_sendable ON outbox (next_attempt_at, seq) WHERE state = 'pending' AND held = 0;
  `,
  // 3: jobs rebuilt with the small columns first and metadata, request and result last. SQLite
  // reaches a column stored after a large value by walking that value's overflow pages, so with
  // the bodies in the middle a list of 20 jobs of 15 MB read 600 MB to render their timestamps.
  // The copy needs room for the table twice while it runs; the constraints are those of 1.
  `
  CREATE TABLE jobs_v3 (
    id              TEXT PRIMARY KEY CHECK (length(id) = 26),
    kind            TEXT NOT NULL CHECK (kind IN ('sync', 'async')),
    endpoint        TEXT NOT NULL CHECK (endpoint IN ('chat', 'generate')),
    model           TEXT NOT NULL CHECK (length(model) > 0),
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'loading', 'working', 'done', 'failed', 'cancelled')),
    webhook_url     TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    attempt         INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before      INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    metadata        TEXT,
    request         TEXT NOT NULL,
    result          TEXT,
    CHECK ((state IN ('done', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'done' OR result IS NOT NULL),
    CHECK (kind = 'async' OR (webhook_url IS NULL AND idempotency_key IS NULL)),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
  ) STRICT;
  INSERT INTO jobs_v3 (id, kind, endpoint, model, state, webhook_url, idempotency_key,
    request_hash, attempt, not_before, error, created_at, updated_at, started_at, finished_at,
    metadata, request, result)
  SELECT id, kind, endpoint, model, state, webhook_url, idempotency_key, request_hash, attempt,
    not_before, error, created_at, updated_at, started_at, finished_at, metadata, request, result
  FROM jobs;
  DROP TABLE jobs;
  ALTER TABLE jobs_v3 RENAME TO jobs;
  CREATE INDEX jobs_queued_by_model ON jobs (model, id) WHERE state = 'queued';
  CREATE INDEX jobs_queued_fifo ON jobs (id) WHERE state = 'queued';
  CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('loading', 'working');
  CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
  `,
  // 4: jobs rebuilt to take the OpenAI-compatible endpoints (ADR-0016) in the endpoint CHECK,
  // which SQLite cannot alter in place; columns, order and the other constraints are those of 3.
  `
  CREATE TABLE jobs_v4 (
    id              TEXT PRIMARY KEY CHECK (length(id) = 26),
    kind            TEXT NOT NULL CHECK (kind IN ('sync', 'async')),
    endpoint        TEXT NOT NULL
                    CHECK (endpoint IN ('chat', 'generate', 'openai.chat', 'openai.completions')),
    model           TEXT NOT NULL CHECK (length(model) > 0),
    state           TEXT NOT NULL
                    CHECK (state IN ('queued', 'loading', 'working', 'done', 'failed', 'cancelled')),
    webhook_url     TEXT,
    idempotency_key TEXT UNIQUE,
    request_hash    TEXT,
    attempt         INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    not_before      INTEGER NOT NULL DEFAULT 0,
    error           TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    metadata        TEXT,
    request         TEXT NOT NULL,
    result          TEXT,
    CHECK ((state IN ('done', 'failed', 'cancelled')) = (finished_at IS NOT NULL)),
    CHECK (state <> 'done' OR result IS NOT NULL),
    CHECK (kind = 'async' OR (webhook_url IS NULL AND idempotency_key IS NULL)),
    CHECK ((idempotency_key IS NULL) = (request_hash IS NULL))
  ) STRICT;
  INSERT INTO jobs_v4 (id, kind, endpoint, model, state, webhook_url, idempotency_key,
    request_hash, attempt, not_before, error, created_at, updated_at, started_at, finished_at,
    metadata, request, result)
  SELECT id, kind, endpoint, model, state, webhook_url, idempotency_key, request_hash, attempt,
    not_before, error, created_at, updated_at, started_at, finished_at, metadata, request, result
  FROM jobs;
  DROP TABLE jobs;
  ALTER TABLE jobs_v4 RENAME TO jobs;
  CREATE INDEX jobs_queued_by_model ON jobs (model, id) WHERE state = 'queued';
  CREATE INDEX jobs_queued_fifo ON jobs (id) WHERE state = 'queued';
  CREATE INDEX jobs_active ON jobs (state) WHERE state IN ('loading', 'working');
  CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
  `,
  // 5: the outbox holds an event for every change of every job (ADR-0017), so a job can be watched
  // whether or not it has a webhook. An event of a job without one is `local`: no URL, no due
  // time, and delivery columns that stay empty. `job_state` names the state the event reports,
  // for watchers, without parsing the body; the body moves last (see 3). Webhook figures count
  // only events with a URL, through their own index, so they cost what they did before.
  `
  CREATE TABLE outbox_v5 (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    job_id          TEXT NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    job_state       TEXT NOT NULL
                    CHECK (job_state IN ('queued', 'loading', 'working', 'done', 'failed', 'cancelled')),
    url             TEXT,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead', 'local')),
    held            INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),
    attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    body            TEXT NOT NULL,
    CHECK ((state = 'delivered') = (delivered_at IS NOT NULL)),
    CHECK ((state = 'local') = (url IS NULL)),
    CHECK ((state = 'local') = (next_attempt_at IS NULL)),
    CHECK (state <> 'local' OR
      (held = 0 AND attempts = 0 AND last_status IS NULL AND last_error IS NULL))
  ) STRICT;
  INSERT INTO outbox_v5 (seq, id, job_id, job_state, url, state, held, attempts, next_attempt_at,
    last_status, last_error, created_at, delivered_at, body)
  SELECT seq, id, job_id,
    coalesce(CASE WHEN json_valid(body) THEN json_extract(body, '$.state') END,
      (SELECT state FROM jobs WHERE jobs.id = outbox.job_id)),
    url, state, held, attempts,
    next_attempt_at, last_status, last_error, created_at, delivered_at, body
  FROM outbox;
  DROP TABLE outbox;
  ALTER TABLE outbox_v5 RENAME TO outbox;
  CREATE INDEX outbox_sendable ON outbox (next_attempt_at, seq) WHERE state = 'pending' AND held = 0;
  CREATE INDEX outbox_by_job ON outbox (job_id, seq);
  CREATE INDEX outbox_deliveries ON outbox (state) WHERE url IS NOT NULL;
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** Brings the database up to SCHEMA_VERSION; refuses a database written by a newer foreman. */
export function migrate(db: DatabaseSync): void {
  db.exec("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT");
  const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
    | { value: string }
    | undefined;
  const current = row ? Number(row.value) : 0;
  if (current > SCHEMA_VERSION) {
    throw new Error(
      `Cannot open database: schema version ${current} is newer than this foreman (${SCHEMA_VERSION})`,
    );
  }
  if (current === SCHEMA_VERSION) return;
  // Rebuilding a table drops the old one, which with foreign keys on would cascade to every
  // artifact and event. SQLite switches them only outside a transaction: off for the whole run,
  // and each migration checks before it commits that it left no dangling reference.
  const enforced = (db.prepare("PRAGMA foreign_keys").get() as { foreign_keys: number })
    .foreign_keys === 1;
  if (enforced) db.exec("PRAGMA foreign_keys = OFF");
  try {
    for (const [i, migration] of MIGRATIONS.slice(current).entries()) {
      const v = current + i;
      db.exec("BEGIN IMMEDIATE");
      try {
        db.exec(migration);
        const dangling = db.prepare("PRAGMA foreign_key_check").all().length;
        if (dangling > 0) {
          throw new Error(
            `Cannot migrate database to schema version ${v + 1}: ` +
              `${dangling} rows would reference missing jobs`,
          );
        }
        db.prepare(
          "INSERT INTO meta (key, value) VALUES ('schema_version', ?) " +
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        ).run(String(v + 1));
        db.exec("COMMIT");
      } catch (err) {
        db.exec("ROLLBACK");
        throw err;
      }
    }
  } finally {
    if (enforced) db.exec("PRAGMA foreign_keys = ON");
  }
}
