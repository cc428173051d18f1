// Watching a job over the caller's own connection (ADR-0017): long polls on GET /jobs/{id}?wait=
// and Server-Sent Events on GET /jobs/{id}/events. Both wake on the store's news of a committed
// event, never by polling SQLite; one shared ticker sends heartbeats and one sends progress, each
// only while someone needs it; a stream holds a bounded part of what its reader has not taken (a
// backlog is read a page at a time); a watcher that stops reading is dropped, never waited for.

import { errorMessage, type Logger } from "../log.ts";
import { isTerminal, type JobState } from "../queue/states.ts";
import type { JobEvent, Store } from "../queue/store.ts";
import { parseDuration } from "../units.ts";
import type { Progress } from "../worker/progress.ts";
import { HttpError } from "./errors.ts";

/** The longest long poll; a longer wait is clamped to it. */
const MAX_WAIT = 60_000;
/** How often a stream with nothing to say sends a comment, so proxies keep it open. */
const HEARTBEAT = 15_000;
/**
 * Longest a stream may hold bytes its reader does not take before it is dropped, whatever
 * target.timeout says: a reader that took nothing for this long while its events piled up is gone.
 */
export const MAX_DRAIN = 30_000;
/** How often a watcher of a working job hears its progress. */
const PROGRESS = 1000;
/** Longest piece a stream hands to the server at once: a large event goes out piece by piece. */
const PIECE = 64 * 1024;
/** Unread bytes a stream may hold when a new event comes; a watcher further behind is dropped. */
const BACKLOG = 256 * 1024;
/**
 * Bytes of a backlog (the events after a client's Last-Event-ID) read from the store at once: the
 * next page is read when the reader has taken this one, so a stream never holds a whole backlog.
 */
const PAGE = 64 * 1024;

export interface WatchersOptions {
  store: Store;
  /** How far the worker's working job has got. */
  progress: () => Readonly<Progress> | undefined;
  log: Logger;
  /** Event streams and long polls open at once (server.max_watchers); past it, 503. */
  max: number;
  /**
   * Longest a stream may hold bytes its reader does not take; then dropped. The daemon gives
   * target.timeout (the rule for sync callers), at most MAX_DRAIN.
   */
  drainTimeout: number;
  /** Heartbeat (HEARTBEAT) and progress periods (ms); tests shorten them. */
  heartbeat?: number;
  progressEvery?: number;
  now?: () => number;
}

/** An event as a stream sends it: encoded once, shared by every watcher of the job. */
interface Frame {
  seq: number;
  state: JobState;
  bytes: Uint8Array;
}

/** A watcher of one job: a long poll or an event stream. */
interface Subscriber {
  /**
   * The last event it has; undefined when it needs no events with the news: a long poll (it
   * needs only the news), a stream catching up (it reads its backlog from the store).
   */
  readonly seq?: number;
  /** The job's events committed after `from` (the lowest `seq` of the job's watchers). */
  news(frames: readonly Frame[]): void;
  /** Foreman stops: answer now. */
  end(): void;
}

const encoder = new TextEncoder();
const KEEP_ALIVE = encoder.encode(": keep-alive\n\n");

export class Watchers {
  readonly #o: WatchersOptions;
  readonly #now: () => number;
  readonly #byJob = new Map<string, Set<Subscriber>>();
  /** The frame of each watched job's latest event, shared by the streams that start with it. */
  readonly #latest = new Map<string, Frame>();
  readonly #streams = new Set<EventStream>();
  #open = 0;
  #closed = false;
  #heartbeat?: ReturnType<typeof setInterval>;
  #ticker?: ReturnType<typeof setInterval>;

  constructor(options: WatchersOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    options.store.onEvent((jobId) => this.#news(jobId));
  }

  /** Event streams and long polls open now. */
  get count(): number {
    return this.#open;
  }

  /**
   * Resolves once job `jobId` has a new event, after `ms`, when `signal` aborts or when foreman
   * stops, whichever comes first. Takes a watcher's place (503 when none is left).
   */
  async waitForChange(jobId: string, options: { ms: number; signal: AbortSignal }): Promise<void> {
    const { ms, signal } = options;
    const release = this.#admit();
    try {
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          signal.removeEventListener("abort", done);
          unsubscribe();
          resolve();
        };
        const unsubscribe = this.#subscribe(jobId, { news: done, end: done });
        const timer = setTimeout(done, ms);
        signal.addEventListener("abort", done, { once: true });
        if (signal.aborted) done();
      });
    } finally {
      release();
    }
  }

  /**
   * The first page of job `jobId`'s events after the one at `seq`, for a stream that resumes
   * there; `more` when the store holds more (the stream reads them as its reader takes these).
   */
  page(jobId: string, seq: number): { events: JobEvent[]; more: boolean } {
    return this.#o.store.outbox.eventPage(jobId, seq, PAGE);
  }

  /**
   * The event stream of job `jobId`: `initial` (its latest event, or the first page of those after
   * the client's last), then the rest of that backlog a page at a time when `more`, then every
   * event committed after it, ending after the terminal one. Takes a watcher's place (503 when
   * none is left).
   */
  stream(
    jobId: string,
    options: {
      seq: number;
      initial: readonly JobEvent[];
      more?: boolean;
      synthetic?: string;
      state: JobState;
    },
  ): ReadableStream<Uint8Array> {
    const release = this.#admit();
    const stream = new EventStream({
      seq: options.seq,
      backlog: options.more ? (after) => this.page(jobId, after) : undefined,
      drainTimeout: this.#o.drainTimeout,
      onEnd: (dropped) => {
        unsubscribe();
        this.#streams.delete(stream);
        release();
        if (dropped) {
          this.#o.log.warn("event stream dropped: its reader stopped reading", {
            job_id: jobId,
            error: dropped,
          });
        }
      },
    });
    // Subscribed before anything is sent, with no await in between: no event can slip past.
    const unsubscribe = this.#subscribe(jobId, stream);
    this.#streams.add(stream);
    if (options.synthetic !== undefined) {
      // A job from before schema 5 has no event yet: its state now, without an id to resume from.
      stream.send({
        seq: 0,
        state: options.state,
        bytes: encoder.encode(`event: ${options.state}\ndata: ${options.synthetic}\n\n`),
      });
    }
    const last = options.initial.at(-1);
    for (const e of options.initial) {
      // The latest event is what every stream opened without Last-Event-ID starts with: many
      // watchers joining a job share its bytes.
      stream.send(e === last && !options.more ? this.#shared(jobId, e) : frame(e));
    }
    if (options.state === "working") this.#startProgress();
    this.#heartbeat ??= setInterval(() => this.#beat(), this.#o.heartbeat ?? HEARTBEAT);
    return stream.readable;
  }

  /** Foreman stops: long polls answer, streams end once their reader has what was sent. */
  close(): void {
    this.#closed = true;
    for (const subs of [...this.#byJob.values()]) for (const s of [...subs]) s.end();
    this.#stopTimers();
  }

  #admit(): () => void {
    if (this.#closed) throw new HttpError(503, "foreman is shutting down; try again shortly");
    if (this.#open >= this.#o.max) {
      throw new HttpError(
        503,
        `too many watchers: ${this.#o.max} event streams and long polls are open ` +
          `(FOREMAN_MAX_WATCHERS); try again shortly`,
        { "retry-after": "5" },
      );
    }
    this.#open++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#open--;
    };
  }

  #subscribe(jobId: string, sub: Subscriber): () => void {
    let subs = this.#byJob.get(jobId);
    if (!subs) this.#byJob.set(jobId, subs = new Set());
    subs.add(sub);
    return () => {
      subs.delete(sub);
      if (subs.size === 0 && this.#byJob.get(jobId) === subs) {
        this.#byJob.delete(jobId);
        this.#latest.delete(jobId);
      }
    };
  }

  /** The frame of event `e`, the latest of watched job `jobId`, encoded once for its watchers. */
  #shared(jobId: string, e: JobEvent): Frame {
    const known = this.#latest.get(jobId);
    if (known?.seq === e.seq) return known;
    const made = frame(e);
    if (known === undefined || known.seq < e.seq) this.#latest.set(jobId, made);
    return made;
  }

  /**
   * A transition of job `jobId` committed. One query reads what its watchers have not seen (from
   * the one furthest behind), encoded once for all of them. Runs in the writer's turn: it must not
   * throw, and it costs one map look-up when nobody watches the job.
   */
  #news(jobId: string): void {
    const subs = this.#byJob.get(jobId);
    if (!subs) return;
    try {
      let from = Infinity;
      for (const s of subs) if (s.seq !== undefined) from = Math.min(from, s.seq);
      const frames = from === Infinity
        ? []
        : this.#o.store.outbox.eventsAfter(jobId, from).map(frame);
      const latest = frames.at(-1);
      if (latest) this.#latest.set(jobId, latest);
      for (const s of [...subs]) s.news(frames);
      if (latest?.state === "working") this.#startProgress();
    } catch (err) {
      this.#o.log.error("cannot tell watchers of a job's event", {
        job_id: jobId,
        error: errorMessage(err),
      });
    }
  }

  /** Runs the progress ticker while a stream watches the job that works. */
  #startProgress(): void {
    if (this.#closed) return;
    this.#ticker ??= setInterval(() => this.#tick(), this.#o.progressEvery ?? PROGRESS);
  }

  #tick(): void {
    const p = this.#o.progress();
    const streams = p === undefined
      ? []
      : [...this.#byJob.get(p.jobId) ?? []].filter((s) => s instanceof EventStream);
    if (p === undefined || streams.length === 0) {
      clearInterval(this.#ticker);
      this.#ticker = undefined;
      return;
    }
    const elapsed = Math.max(0, this.#now() - p.since);
    const rate = p.records === null || elapsed === 0
      ? null
      : Math.round(p.records / (elapsed / 1000) * 10) / 10;
    const data = JSON.stringify({
      job_id: p.jobId,
      state: "working",
      tokens: p.records,
      tokens_per_second: rate,
      elapsed_ms: elapsed,
    });
    const bytes = encoder.encode(`event: progress\ndata: ${data}\n\n`);
    for (const s of streams) s.aside(bytes);
  }

  #beat(): void {
    if (this.#streams.size === 0) {
      clearInterval(this.#heartbeat);
      this.#heartbeat = undefined;
      return;
    }
    for (const s of this.#streams) s.aside(KEEP_ALIVE);
  }

  #stopTimers(): void {
    clearInterval(this.#heartbeat);
    clearInterval(this.#ticker);
    this.#heartbeat = this.#ticker = undefined;
  }
}

function frame(e: JobEvent): Frame {
  return {
    seq: e.seq,
    state: e.state,
    bytes: encoder.encode(`id: ${e.id}\nevent: ${e.state}\ndata: ${e.body}\n\n`),
  };
}

/**
 * One watcher's stream. The reader pulls; what it has not taken waits here, in pieces, and the
 * server is handed one piece per read, so a reader that stops reading is seen here within one
 * piece of the socket's buffers. While the reader owes a read (a piece handed and not asked past,
 * or pieces waiting) one timer runs, the only one a stream ever has: a reader that takes nothing
 * for the drain timeout, or falls too far behind, is dropped. An idle stream has no timer.
 * A stream that resumes behind a long backlog reads it from the store a page at a time, each
 * when its reader has taken the one before, and hears the news only once it has caught up.
 */
class EventStream implements Subscriber {
  /** The last event sent (waiting here or taken). */
  #seq: number;
  /** Reads the page of events after a seq while the stream is catching up; then undefined. */
  #backlog?: (after: number) => { events: JobEvent[]; more: boolean };
  readonly readable: ReadableStream<Uint8Array>;
  readonly #drainTimeout: number;
  readonly #onEnd: (dropped?: string) => void;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  readonly #pending: Uint8Array[] = [];
  #pendingBytes = 0;
  /** Resolves the pull that waits for something to send. */
  #waiting?: () => void;
  #stall?: ReturnType<typeof setTimeout>;
  #ending = false;
  #ended = false;

  constructor(options: {
    seq: number;
    backlog?: (after: number) => { events: JobEvent[]; more: boolean };
    drainTimeout: number;
    onEnd: (dropped?: string) => void;
  }) {
    this.#seq = options.seq;
    this.#backlog = options.backlog;
    this.#drainTimeout = options.drainTimeout;
    this.#onEnd = options.onEnd;
    this.readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      pull: (c) => this.#pull(c),
      cancel: () => this.#end(),
    }, { highWaterMark: 0 });
  }

  get seq(): number | undefined {
    return this.#backlog ? undefined : this.#seq;
  }

  news(frames: readonly Frame[]): void {
    // Catching up, it reads these from the store when it gets there.
    if (this.#backlog) return;
    for (const f of frames) {
      if (f.seq <= this.#seq || this.#ending) continue;
      if (this.#pendingBytes > BACKLOG) {
        return this.#drop(`more than ${BACKLOG} bytes of events unread`);
      }
      this.send(f);
    }
  }

  /** Sends a durable event; the stream ends after a terminal one. */
  send(f: Frame): void {
    if (this.#ending) return;
    if (f.seq > this.#seq) this.#seq = f.seq;
    this.#push(f.bytes);
    if (isTerminal(f.state)) this.#finish();
  }

  /**
   * A heartbeat or progress: sent only to a reader that has taken everything else, never to one
   * still catching up (its events are older than the progress, and not idle).
   */
  aside(bytes: Uint8Array): void {
    if (!this.#ending && !this.#backlog && this.#pending.length === 0) this.#push(bytes);
  }

  end(): void {
    this.#finish();
  }

  #push(bytes: Uint8Array): void {
    for (let at = 0; at < bytes.byteLength; at += PIECE) {
      const piece = bytes.subarray(at, at + PIECE);
      this.#pending.push(piece);
      this.#pendingBytes += piece.byteLength;
    }
    const waiting = this.#waiting;
    if (waiting) {
      this.#waiting = undefined;
      this.#hand(this.#controller);
      waiting();
    }
    if (this.#pending.length > 0) this.#stall ??= setTimeout(this.#stalled, this.#drainTimeout);
  }

  /**
   * Hands the next piece to the server (a read is waiting for it). Until the server asks for the
   * next one it is writing this one, which a reader that reads nothing never lets it finish.
   */
  #hand(c: ReadableStreamDefaultController<Uint8Array>): void {
    const piece = this.#pending.shift()!;
    this.#pendingBytes -= piece.byteLength;
    c.enqueue(piece);
    this.#stall ??= setTimeout(this.#stalled, this.#drainTimeout);
  }

  #pull(c: ReadableStreamDefaultController<Uint8Array>): Promise<void> | void {
    // The reader took what it was handed: whatever it still owes is timed afresh.
    clearTimeout(this.#stall);
    this.#stall = undefined;
    if (this.#pending.length === 0 && this.#backlog && !this.#ending) {
      this.#catchUp();
      if (this.#ended) return; // dropped: the stream has errored
    }
    if (this.#pending.length > 0) {
      this.#hand(c);
      return;
    }
    if (this.#ending) {
      c.close();
      this.#end();
      return;
    }
    return new Promise((resolve) => this.#waiting = resolve);
  }

  /**
   * The next page of the backlog, read now that the reader has taken the last one. A page that
   * ends the backlog ends the catching up in the same turn, so no event slips between the store
   * and the news.
   */
  #catchUp(): void {
    let page: { events: JobEvent[]; more: boolean };
    try {
      page = this.#backlog!(this.#seq);
    } catch (err) {
      // Ended here, so the stream gives back its place: the reader resumes from what it has.
      return this.#drop(`cannot read its events: ${errorMessage(err)}`);
    }
    if (!page.more) this.#backlog = undefined;
    for (const e of page.events) this.send(frame(e));
  }

  /** No more events: close once the reader has everything (at once if it has). */
  #finish(): void {
    if (this.#ending || this.#ended) return;
    this.#ending = true;
    const waiting = this.#waiting;
    if (waiting && this.#pending.length === 0) {
      this.#waiting = undefined;
      this.#controller.close();
      waiting();
      this.#end();
    }
  }

  #stalled = () => {
    this.#stall = undefined;
    this.#drop(`read nothing for ${this.#drainTimeout} ms`);
  };

  #drop(why: string): void {
    if (this.#ended) return;
    this.#pending.length = 0;
    this.#pendingBytes = 0;
    try {
      this.#controller.error(new Error(`event stream dropped: ${why}`));
    } catch {
      // already closed or cancelled
    }
    this.#end(why);
  }

  #end(dropped?: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#ending = true;
    clearTimeout(this.#stall);
    this.#stall = undefined;
    this.#waiting?.();
    this.#waiting = undefined;
    this.#onEnd(dropped);
  }
}

/**
 * A wait as `?wait=` takes it: a Go duration without a sign ("30s", "1m30s", "250ms") or zero.
 * docs/openapi.yaml gives the parameter this pattern, so the spec and the server agree exactly.
 */
const WAIT = /^(0+|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$/;

/**
 * How long GET /jobs/{id} may wait for a change: `?wait=` (a duration, 400 when it is not one),
 * else RFC 7240's `Prefer: wait=<seconds>` (ignored when malformed, as the RFC asks); 0 for none.
 * Clamped to MAX_WAIT.
 */
export function requestedWait(req: Request, url: URL): number {
  const text = url.searchParams.get("wait");
  if (text !== null) {
    const ms = WAIT.test(text) ? parseDuration(text) : undefined;
    if (ms === undefined) {
      throw new HttpError(
        400,
        `invalid wait '${text.slice(0, 64)}': expected a duration such as 30s (at most 60s)`,
      );
    }
    return Math.min(ms, MAX_WAIT);
  }
  for (const pref of (req.headers.get("prefer") ?? "").split(",")) {
    const m = /^\s*wait\s*=\s*"?(\d{1,9})"?\s*(;.*)?$/i.exec(pref);
    if (m) return Math.min(Number(m[1]) * 1000, MAX_WAIT);
  }
  return 0;
}
