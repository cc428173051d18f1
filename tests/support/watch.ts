// What the watch tests share (ADR-0017): a client of GET /jobs/{id}/events that collects the events,
// a raw-socket stream that never reads, the job's outbox rows as foreman wrote them, and the stacks
// they run against: a foreman process in front of the simulator, or foreman's daemon in this
// process with internal timings (the heartbeat, the drain bound) shortened.

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { type ForemanProcess, waitFor } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";
import { startDaemon, type Tuning } from "../../src/app.ts";
import { loadConfig } from "../../src/config.ts";
import { createLogger } from "../../src/log.ts";
import { readEvents, type StreamEvent } from "../../src/cli/events.ts";
import { startStack } from "./stack.ts";
import { openStore } from "./store.ts";

/** What the helpers below need of a foreman: a process, or a daemon in this process. */
export type Foreman = Pick<ForemanProcess, "url" | "port" | "token" | "dbPath" | "headers">;

const enc = new TextEncoder();

/** One event of a job's stream, as `foreman submit --wait` reads it. */
export type Sse = StreamEvent;

export interface Watch {
  status: number;
  headers: Headers;
  events: Sse[];
  /** Settles when the stream ends: its end, or the error that cut it. */
  ended: Promise<"end" | "error">;
  stop(): void;
}

/** Opens a job's event stream and collects its events as they arrive. */
export async function watch(
  fm: Foreman,
  id: string,
  options: { lastEventId?: string; query?: string } = {},
): Promise<Watch> {
  const abort = new AbortController();
  const headers = fm.headers(
    options.lastEventId === undefined ? {} : { "last-event-id": options.lastEventId },
  );
  const res = await fetch(`${fm.url}/jobs/${id}/events${options.query ?? ""}`, {
    headers,
    signal: abort.signal,
  });
  const events: Sse[] = [];
  const ended = res.ok && res.body ? read(res.body, events) : res.text().then(() => "end" as const);
  return { status: res.status, headers: res.headers, events, ended, stop: () => abort.abort() };
}

/** Collects the events of `body` (src/cli/events.ts parses them) until it ends or breaks. */
async function read(body: ReadableStream<Uint8Array>, events: Sse[]): Promise<"end" | "error"> {
  try {
    for await (const e of readEvents(body)) events.push(e);
    return "end";
  } catch {
    return "error";
  }
}

export const durable = (events: Sse[]) => events.filter((e) => e.event !== "progress");

/** The job's events as foreman wrote them to the outbox, oldest first. */
export function outbox(fm: Foreman, jobId: string): { id: string; state: string; body: string }[] {
  const db = new DatabaseSync(fm.dbPath, { readOnly: true });
  try {
    return db.prepare("SELECT id, job_state, body FROM outbox WHERE job_id = ? ORDER BY seq")
      .all(jobId).map((r) => ({
        id: String(r.id),
        state: String(r.job_state),
        body: String(r.body),
      }));
  } finally {
    db.close();
  }
}

export async function submit(fm: Foreman, body: Record<string, unknown>): Promise<string> {
  const res = await fetch(`${fm.url}/jobs`, {
    method: "POST",
    headers: fm.headers(),
    body: JSON.stringify({ messages: [{ role: "user", content: "hi" }], ...body }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()).job_id;
}

export async function state(fm: Foreman, id: string): Promise<string> {
  return (await (await fetch(`${fm.url}/jobs/${id}`, { headers: fm.headers() })).json()).state;
}

/** foreman's foreman_watchers gauge. */
export async function watchers(fm: Foreman): Promise<number> {
  const text = await (await fetch(`${fm.url}/metrics`, { headers: fm.headers() })).text();
  return Number(/^foreman_watchers (\S+)$/m.exec(text)?.[1]);
}

/**
 * Occupies the worker: a job whose target request stalls before any byte, until it is cancelled.
 * Jobs submitted after it stay queued.
 */
export async function blockWorker(fm: Foreman, sim: OllamaSim): Promise<string> {
  sim.stallNext(1);
  const id = await submit(fm, { model: "tiny-b" });
  // The stall may catch the model's load or the job's own request: either holds the worker.
  await waitFor(async () => ["loading", "working"].includes(await state(fm, id)), {
    what: "the blocking job",
  });
  return id;
}

export async function cancel(fm: Foreman, id: string): Promise<void> {
  const res = await fetch(`${fm.url}/jobs/${id}`, { method: "DELETE", headers: fm.headers() });
  await res.body?.cancel();
}

/**
 * Opens a job's event stream on a raw socket and never reads it: what foreman sends waits in the
 * socket's buffers, then in foreman.
 */
export async function silentWatcher(
  fm: Foreman,
  id: string,
  lastEventId?: string,
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: fm.port });
  const resume = lastEventId === undefined ? "" : `Last-Event-ID: ${lastEventId}\r\n`;
  await conn.write(enc.encode(
    `GET /jobs/${id}/events HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Authorization: Bearer ${fm.token}\r\n${resume}\r\n`,
  ));
  return conn;
}

/**
 * Reads from `reader` until `done` holds for what it has read, the stream ends or `ms` pass; returns the
 * text read. The reader is released (not cancelled), so the caller may go on reading.
 */
export async function readUntil(
  reader: ReadableStreamDefaultReader<string>,
  done: (text: string) => boolean,
  ms: number,
): Promise<string> {
  let text = "";
  const deadline = Date.now() + ms;
  while (!done(text) && Date.now() < deadline) {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((r) =>
      timer = setTimeout(() => r("late"), deadline - Date.now())
    );
    const next = await Promise.race([reader.read(), late]);
    clearTimeout(timer);
    if (next === "late" || next.done) break;
    text += next.value;
  }
  return text;
}

/**
 * foreman's daemon in this process, as `deno task start` builds it from `flags`, on a real port
 * and a real SQLite file in front of the simulator, with `tuning` (timings no setting reaches);
 * `logs` holds its log lines.
 */
export async function withDaemon(
  tuning: Tuning,
  fn: (s: { sim: OllamaSim; fm: Foreman; logs: string[] }) => Promise<void>,
  flags: Record<string, string> = {},
): Promise<void> {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 2 });
  const dir = await Deno.makeTempDir({ prefix: "foreman-watch-" });
  const token = crypto.randomUUID();
  const logs: string[] = [];
  const daemon = await startDaemon(
    loadConfig({
      env: () => undefined,
      readFile: (path) => {
        throw new Deno.errors.NotFound(path);
      },
      flags: {
        addr: "127.0.0.1:0",
        db: `${dir}/data/foreman.db`,
        "ollama-url": sim.url,
        "poll-interval": "1s",
        token,
        ...flags,
      },
    }),
    createLogger({ write: (line) => logs.push(line) }),
    tuning,
  );
  const fm: Foreman = {
    url: daemon.url,
    port: daemon.addr.port,
    token,
    dbPath: `${dir}/data/foreman.db`,
    headers: (extra = {}) => ({ authorization: `Bearer ${token}`, ...extra }),
  };
  try {
    await fn({ sim, fm, logs });
  } finally {
    await daemon.stop();
    await daemon.finished;
    await sim.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/**
 * A foreman process in front of the simulator (startStack), with the simulator's timings these
 * tests were written for (`loadMs` 10, `tokenMs` 2 unless given).
 */
export async function withStack(
  fn: (s: { sim: OllamaSim; fm: ForemanProcess }) => Promise<void>,
  options: { args?: string[]; loadMs?: number; tokenMs?: number } = {},
): Promise<void> {
  const { sim, fm, close } = await startStack({
    sim: { loadMs: options.loadMs ?? 10, tokenMs: options.tokenMs ?? 2 },
    args: options.args,
  });
  try {
    await fn({ sim, fm });
  } finally {
    await close();
  }
}

/**
 * Writes, before foreman starts, an async job retried `rounds` times: three events a round (claimed,
 * working, requeued), each carrying the job's 16 KiB of metadata as a webhook event does. The
 * retries are due after `notBefore` (0: at once); `cancel` ends the job after them.
 */
export function seedBacklog(
  dbPath: string,
  options: { rounds: number; notBefore: number; cancel: boolean },
): string {
  const store = openStore(dbPath);
  try {
    const job = store.insertJob({
      kind: "async",
      endpoint: "chat",
      model: "tiny-a:latest",
      request: JSON.stringify({ model: "tiny-a:latest", messages: [] }),
      metadata: JSON.stringify({ note: "m".repeat(16 * 1024) }),
    });
    store.tx(() => {
      for (let i = 0; i < options.rounds; i++) {
        store.transition("claim", job.id);
        store.transition("startWorking", job.id);
        store.transition("requeue", job.id, {
          error: "again",
          notBefore: options.notBefore,
          refund: true,
        });
      }
      if (options.cancel) store.transition("cancel", job.id, { error: "enough" });
    });
    return job.id;
  } finally {
    store.close();
  }
}
