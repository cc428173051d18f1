// Relays a target response body to a caller without parsing it: the bytes go out unchanged, read
// up to 64 KiB ahead of the caller (backpressure reaches the target past that), and a caller that
// is behind gets everything read so far as one chunk, so a fast target costs one write per batch
// instead of one per chunk; a caller that waits gets each chunk the moment it arrives. Only the
// last line is kept (it carries the final metrics, `data: [DONE]` or a mid-stream error), up to a
// cap. One lazily re-armed timer watches both ends: a target silent for the timeout while the
// caller waits has stalled, a caller that took nothing for it is gone.

import { concat } from "../bytes.ts";
import { AnswerTooLargeError, byobReader, openaiErrorBody } from "../ollama/client.ts";

export class StallError extends Error {
  override name = "StallError";
}

export class CallerGoneError extends Error {
  override name = "CallerGoneError";
}

/** The caller kept its connection open but stopped reading: as gone as one that closed it. */
export class CallerStoppedReadingError extends CallerGoneError {
  override name = "CallerStoppedReadingError";
}

export interface Relay {
  /** The stream to hand to the caller's Response. */
  readable: ReadableStream<Uint8Array>;
  /**
   * Settles when the target's body has ended or the relay failed first: resolves with the last
   * complete line of the body (or the whole body when it has no newline; "" for "bytes"), while
   * the caller may still be taking the last bytes read; rejects with StallError, CallerGoneError,
   * AnswerTooLargeError, the signal's reason or the read error.
   */
  done: Promise<string>;
  /** Bytes handed to the caller so far. */
  sent(): number;
}

export interface RelayOptions {
  /** Longest silence of the target while the caller waits, and longest the caller may not read. */
  idleTimeout: number;
  /** Longest line kept (bytes); a longer one ends the relay with AnswerTooLargeError. */
  maxLine?: number;
  /** Ends the relay at once (cancel, shutdown), even while the caller is not reading. */
  signal?: AbortSignal;
  /**
   * How the body is framed, which decides what `done` resolves with and how a failure after the
   * first byte reaches the caller:
   * - "ndjson" (the default), Ollama's lines: the last line is kept; a failure is a final
   *   {"error"} line.
   * - "sse", OpenAI's Server-Sent Events (/v1 with stream:true): the last non-empty line is kept
   *   (`data: [DONE]` when the stream is whole); a failure is a final `data: {"error": {…}}` event,
   *   which OpenAI's SDKs raise as an error.
   * - "bytes": nothing is kept, `done` resolves with ""; a failure aborts the caller's stream.
   */
  framing?: Framing;
  /**
   * Sees each chunk as it is read from the target (a progress counter); it must be quick and never
   * keep the chunk, whose memory is reused.
   */
  onChunk?: (chunk: Uint8Array) => void;
}

export type Framing = "ndjson" | "sse" | "bytes";

const NL = 10;
/** How far the relay reads ahead of its caller. */
const READ_AHEAD = 64 * 1024;

export function relay(body: ReadableStream<Uint8Array>, options: RelayOptions): Relay {
  const run = new RelayRun(body, options);
  return { readable: run.readable, done: run.done, sent: () => run.sent };
}

/**
 * One relay. The read side (`#pump`) holds what it reads from the target; the caller's side
 * (`#pull`, `#flush`) hands it over; `#interrupt` ends the relay early and `#end` closes the
 * caller's stream; `#check` is the watchdog.
 */
class RelayRun {
  readonly readable: ReadableStream<Uint8Array>;
  /** See Relay.done. */
  readonly done: Promise<string>;
  /** Bytes handed to the caller so far. */
  sent = 0;

  readonly #idleTimeout: number;
  readonly #signal?: AbortSignal;
  readonly #framing: Framing;
  readonly #onChunk?: (chunk: Uint8Array) => void;
  readonly #reader: ReadableStreamBYOBReader | ReadableStreamDefaultReader<Uint8Array>;
  readonly #byob: boolean;
  /**
   * Read and not yet handed over: bytes [0, held) of `ahead` (BYOB), or the chunks in `queue`. A
   * BYOB read takes its whole buffer until it returns, so reads go into `scratch` and are copied
   * into `ahead`, which a pull can hand over while the next read is out.
   */
  readonly #ahead: Uint8Array<ArrayBuffer>;
  #scratch: Uint8Array<ArrayBuffer>;
  #held = 0;
  #queue: Uint8Array[] = [];
  #queued = 0;
  /** Bytes read from the target. */
  #read = 0;
  readonly #tail: LastLine;
  /** Newlines at the end of what was read: 2 or more means an SSE event boundary. */
  #trailingNewlines = 0;
  /** The target's body has ended; what is held is the rest of the answer. */
  #ended = false;
  /** Why the relay ended early; the caller gets `lastWords` after what is held, or an error. */
  #failure: unknown;
  #lastWords: Uint8Array | undefined;
  /** The caller's stream is closed, errored or cancelled: nothing more goes to it. */
  #finished = false;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  /** The caller's pending pull, waiting for bytes. */
  #waiting: (() => void) | undefined;
  /** The read loop, waiting for the caller to make room. */
  #roomy: (() => void) | undefined;
  #lastPull = performance.now();
  #settled = false;
  readonly #resolveDone: (last: string) => void;
  readonly #rejectDone: (err: unknown) => void;
  /** The watchdog: one timer, re-armed for what is left when it fires early, nothing per chunk. */
  #timer: ReturnType<typeof setTimeout> | undefined;
  readonly #onAbort = () => this.#interrupt(this.#signal!.reason);

  constructor(body: ReadableStream<Uint8Array>, options: RelayOptions) {
    const { idleTimeout, maxLine = Infinity, signal, framing = "ndjson", onChunk } = options;
    this.#idleTimeout = idleTimeout;
    this.#signal = signal;
    this.#framing = framing;
    this.#onChunk = onChunk;
    this.#reader = byobReader(body);
    this.#byob = this.#reader instanceof ReadableStreamBYOBReader;
    this.#ahead = spare.pop() ?? new Uint8Array(READ_AHEAD);
    this.#scratch = spare.pop() ?? new Uint8Array(READ_AHEAD);
    this.#tail = new LastLine(framing === "bytes" ? 0 : maxLine);
    const { promise, resolve, reject } = Promise.withResolvers<string>();
    this.done = promise;
    this.#resolveDone = resolve;
    this.#rejectDone = reject;
    promise.catch(() => {}); // observed by the worker; avoid unhandled rejection noise

    this.#timer = setTimeout(this.#check, idleTimeout);
    signal?.addEventListener("abort", this.#onAbort, { once: true });
    if (signal?.aborted) queueMicrotask(this.#onAbort);

    this.readable = new ReadableStream<Uint8Array>({
      start: (c) => {
        this.#controller = c;
      },
      pull: () => this.#pull(),
      cancel: () => this.#cancel(),
    }, { highWaterMark: 0 });
    this.#pump();
  }

  #settle(err?: unknown): void {
    if (this.#settled) return;
    this.#settled = true;
    this.#signal?.removeEventListener("abort", this.#onAbort);
    if (err === undefined) this.#resolveDone(this.#framing === "bytes" ? "" : this.#tail.text());
    else this.#rejectDone(err);
  }

  readonly #check = () => {
    this.#timer = undefined;
    if (this.#finished) return;
    const now = performance.now();
    // Silence since the caller's last pull. A caller that waits blames the target (a chunk read
    // while it waits is handed over at once and ends the wait); one that does not take, itself.
    const since = now - this.#lastPull;
    if (since < this.#idleTimeout) {
      this.#timer = setTimeout(this.#check, this.#idleTimeout - since);
      return;
    }
    this.#interrupt(
      this.#waiting && !this.#ended
        ? new StallError(`the target sent nothing for ${this.#idleTimeout} ms`)
        : new CallerStoppedReadingError(`the caller read nothing for ${this.#idleTimeout} ms`),
    );
  };

  /** Ends the relay early: the target's body is cancelled, the caller told as it can be. */
  #interrupt(err: unknown): void {
    if (this.#failure !== undefined || this.#finished) return;
    this.#failure = err;
    this.#settle(err);
    this.#reader.cancel(err).catch(() => {});
    this.#roomy?.();
    if (err instanceof CallerStoppedReadingError || this.#framing === "bytes") {
      return this.#end(err);
    }
    // A caller already gone, or one told nothing more can be said, hears no last words.
    if (!(err instanceof CallerGoneError)) {
      this.#lastWords = encoder.encode(this.#lastWordsFor(err));
    }
    if (!this.#lastWords) return this.#end(err);
    if (this.#waiting) this.#flush();
  }

  /** Ends the caller's stream: closed after the last bytes, or errored. */
  #end(err?: unknown): void {
    if (this.#finished) return;
    this.#finished = true;
    clearTimeout(this.#timer);
    giveBack(this.#ahead);
    try {
      if (err === undefined) this.#controller.close();
      else this.#controller.error(err);
    } catch {
      // the caller's stream was cancelled already
    }
    const w = this.#waiting;
    this.#waiting = undefined;
    w?.();
  }

  /** The caller's last bytes after `err`, in the body's framing. */
  #lastWordsFor(err: unknown): string {
    const message = `foreman: ${(err as Error).message}`;
    // Everything read goes to the caller first, so the separator follows what was read.
    if (this.#framing === "sse") {
      // An event of its own: after a blank line, even when the target was cut mid-event.
      const sep = this.#read === 0 ? "" : "\n".repeat(Math.max(0, 2 - this.#trailingNewlines));
      return `${sep}data: ${JSON.stringify(openaiErrorBody(message))}\n\n`;
    }
    // Ollama's convention for a failure after the first byte: one last {"error"} line, on a
    // line of its own even when the target was cut mid-line.
    const sep = this.#read > 0 && this.#trailingNewlines === 0 ? "\n" : "";
    return sep + JSON.stringify({ error: message }) + "\n";
  }

  /** Hands the caller everything held, as one chunk, and what ends the stream if it is over. */
  #flush(): void {
    if (this.#finished) return;
    let out: Uint8Array | undefined;
    if (this.#held > 0) {
      // The read-ahead buffer is reused: what leaves it is copied once, in one piece.
      out = this.#ahead.slice(0, this.#held);
      this.#held = 0;
    } else if (this.#queue.length > 0) {
      out = concat(this.#queue);
      this.#queue = [];
      this.#queued = 0;
    }
    if (out === undefined && this.#lastWords !== undefined) {
      out = this.#lastWords;
      this.#lastWords = undefined;
    }
    if (out !== undefined) {
      this.sent += out.byteLength;
      this.#controller.enqueue(out);
      const w = this.#waiting;
      this.#waiting = undefined;
      w?.();
      this.#roomy?.();
    }
    // All handed over: the stream closes after the answer, or after the last words of a failure
    // (a failure without last words has ended it already).
    const rest = this.#held > 0 || this.#queue.length > 0 || this.#lastWords !== undefined;
    if (!rest && (this.#ended || this.#failure !== undefined)) this.#end();
  }

  /** Reads the target's body ahead of the caller until it ends, fails or the relay is over. */
  async #pump(): Promise<void> {
    try {
      while (this.#failure === undefined) {
        if (this.#byob ? this.#held === this.#ahead.byteLength : this.#queued >= READ_AHEAD) {
          await new Promise<void>((r) => this.#roomy = r);
          this.#roomy = undefined;
          continue;
        }
        let chunk: Uint8Array;
        if (this.#byob) {
          const view = new Uint8Array(this.#scratch.buffer, 0, this.#ahead.byteLength - this.#held);
          const { value, done } = await (this.#reader as ReadableStreamBYOBReader).read(view);
          // The read moved the buffer: the bytes it filled are the same memory, under a new name.
          if (value) this.#scratch = new Uint8Array(value.buffer as ArrayBuffer);
          if (this.#failure !== undefined || done) break;
          chunk = this.#scratch.subarray(0, value.byteLength);
        } else {
          const { value, done } = await (this.#reader as ReadableStreamDefaultReader<Uint8Array>)
            .read();
          if (this.#failure !== undefined || done) break;
          chunk = value;
        }
        const n = trailingNewlinesOf(chunk);
        this.#trailingNewlines = n === chunk.byteLength ? this.#trailingNewlines + n : n;
        this.#tail.keep(chunk);
        this.#onChunk?.(chunk);
        this.#read += chunk.byteLength;
        if (this.#byob) {
          this.#ahead.set(chunk, this.#held);
          this.#held += chunk.byteLength;
        } else {
          this.#queue.push(chunk);
          this.#queued += chunk.byteLength;
        }
        if (this.#waiting) this.#flush();
      }
      if (this.#failure !== undefined) return;
      this.#ended = true;
      this.#settle();
      if (this.#waiting || (this.#held === 0 && this.#queue.length === 0)) this.#flush();
    } catch (err) {
      this.#interrupt(this.#failure ?? err);
    } finally {
      // No read is out any more: the scratch buffer is free (unless a failed read kept it).
      giveBack(this.#scratch);
    }
  }

  #pull(): Promise<void> | undefined {
    this.#lastPull = performance.now();
    if (this.#held > 0 || this.#queue.length > 0 || this.#lastWords !== undefined || this.#ended) {
      this.#flush();
      return;
    }
    // Nothing read yet: the next chunk goes out the moment it arrives.
    return new Promise<void>((resolve) => this.#waiting = resolve);
  }

  #cancel(): void {
    this.#finished = true;
    clearTimeout(this.#timer);
    giveBack(this.#ahead);
    const gone = new CallerGoneError("the caller closed the connection");
    this.#failure ??= gone;
    this.#settle(gone);
    this.#reader.cancel(gone).catch(() => {});
    this.#roomy?.();
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/**
 * Read-ahead buffers of relays that ended, for the next ones: a 64 KiB buffer is memory V8 counts
 * as external, and two per streamed job brought on a full collection every few hundred jobs.
 */
const spare: Uint8Array<ArrayBuffer>[] = [];

function giveBack(buffer: Uint8Array<ArrayBuffer>): void {
  // A buffer moved into a read that failed is detached (length 0): it is gone.
  if (buffer.byteLength === READ_AHEAD && spare.length < 8 && !spare.includes(buffer)) {
    spare.push(buffer);
  }
}

/**
 * The last non-empty line of what was read, kept as bytes in one reused buffer: after the last
 * newline before a chunk's final newlines (SSE ends each event with a blank line; NDJSON has
 * none). A line longer than `max` throws AnswerTooLargeError before more of it is held.
 */
class LastLine {
  #buf = new Uint8Array(256);
  #size = 0;
  /** The line kept so far ended with a newline: the next bytes start a new one. */
  #complete = false;
  readonly #max: number;

  constructor(max: number) {
    this.#max = max;
  }

  keep(chunk: Uint8Array): void {
    if (this.#max === 0) return;
    const end = chunk.byteLength - trailingNewlinesOf(chunk);
    if (end === 0) {
      // Only newlines: the line kept so far is complete.
      if (chunk.byteLength > 0) this.#complete = true;
      return;
    }
    const cut = chunk.lastIndexOf(NL, end - 1);
    if (cut >= 0 || this.#complete) this.#size = 0;
    this.#append(chunk.subarray(cut + 1, end));
    this.#complete = end < chunk.byteLength;
  }

  #append(bytes: Uint8Array): void {
    const size = this.#size + bytes.byteLength;
    if (size > this.#max) {
      this.#size = 0;
      throw new AnswerTooLargeError(this.#max, "line");
    }
    if (size > this.#buf.byteLength) {
      const grown = new Uint8Array(Math.min(this.#max, Math.max(size, this.#buf.byteLength * 2)));
      grown.set(this.#buf.subarray(0, this.#size));
      this.#buf = grown;
    }
    this.#buf.set(bytes, this.#size);
    this.#size = size;
  }

  text(): string {
    const text = decoder.decode(this.#buf.subarray(0, this.#size)).trim();
    return text.slice(text.lastIndexOf("\n") + 1);
  }
}

function trailingNewlinesOf(chunk: Uint8Array): number {
  let n = 0;
  while (n < chunk.byteLength && chunk[chunk.byteLength - 1 - n] === NL) n++;
  return n;
}
