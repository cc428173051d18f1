// Relays a target response body to a caller chunk by chunk, without parsing it: bytes go out as
// they arrive, pulled by the caller so backpressure reaches the target. Only the last line is kept
// (it carries the final metrics, `data: [DONE]` or a mid-stream error), up to a cap. One idle timer
// watches both ends: a target silent for the timeout has stalled, a caller that read nothing for it
// is gone.

import { concat } from "../bytes.ts";
import { AnswerTooLargeError, IdleTimer, openaiErrorBody } from "../ollama/client.ts";

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
   * Settles when the relay ends: resolves with the last complete line of the body (or the whole
   * body when it has no newline); rejects with StallError, CallerGoneError, AnswerTooLargeError,
   * the signal's reason or the read error.
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
   * - "json", one JSON document (/v1 with stream:false): kept whole, up to `maxLine`; a failure
   *   aborts the caller's stream, since a document has no room for a second one.
   * - "bytes": nothing is kept, `done` resolves with ""; a failure aborts the caller's stream.
   */
  framing?: Framing;
  /**
   * Sees each chunk as it goes to the caller (a progress counter); it must be quick and never
   * keep the chunk.
   */
  onChunk?: (chunk: Uint8Array) => void;
}

export type Framing = "ndjson" | "sse" | "json" | "bytes";

const NL = 10;

export function relay(body: ReadableStream<Uint8Array>, options: RelayOptions): Relay {
  const { idleTimeout, maxLine = Infinity, signal, framing = "ndjson", onChunk } = options;
  const reader = body.getReader();
  let sent = 0;
  let tail: Uint8Array[] = [];
  let tailBytes = 0;
  let tailComplete = false;
  /** Newlines at the end of what was sent: 2 or more means an SSE event boundary. */
  let trailingNewlines = 0;
  let settled = false;
  /** A read from the target is in progress (the caller asked for more). */
  let pulling = false;
  /** Why the relay was ended from outside a read (watchdog, signal). */
  let failure: unknown;
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  let resolveDone!: (last: string) => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<string>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => {}); // observed by the worker; avoid unhandled rejection noise

  const idle = new IdleTimer(idleTimeout, () =>
    interrupt(
      pulling
        ? new StallError(`the target sent nothing for ${idleTimeout} ms`)
        : new CallerStoppedReadingError(`the caller read nothing for ${idleTimeout} ms`),
    ));
  const onAbort = () => interrupt(signal!.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  if (signal?.aborted) queueMicrotask(onAbort);

  const finish = (err?: unknown) => {
    if (settled) return;
    settled = true;
    idle.stop();
    signal?.removeEventListener("abort", onAbort);
    if (err === undefined) resolveDone(framing === "json" ? whole(tail) : lastLine(tail));
    else rejectDone(err);
  };

  /** Ends the relay from outside a read: a pending read returns at once and reports `err`. */
  function interrupt(err: unknown) {
    if (settled || failure !== undefined) return;
    failure = err;
    reader.cancel(err).catch(() => {});
    if (!pulling) fail(err);
  }

  /** Ends the caller's stream after `err`, in the way the caller can still be told. */
  function fail(err: unknown) {
    finish(err);
    try {
      const last = err instanceof CallerGoneError ? undefined : lastWords(err);
      if (last === undefined) controller.error(err);
      else {
        controller.enqueue(new TextEncoder().encode(last));
        controller.close();
      }
    } catch {
      // the caller's stream was cancelled already
    }
  }

  /** The caller's last bytes after `err`, in the body's framing; undefined where it has none. */
  function lastWords(err: unknown): string | undefined {
    const message = `foreman: ${(err as Error).message}`;
    if (framing === "ndjson") {
      // Ollama's convention for a failure after the first byte: one last {"error"} line, on a
      // line of its own even when the target was cut mid-line.
      const sep = sent > 0 && !tailComplete ? "\n" : "";
      return sep + JSON.stringify({ error: message }) + "\n";
    }
    if (framing === "sse") {
      // An event of its own: after a blank line, even when the target was cut mid-event.
      const sep = sent === 0 ? "" : "\n".repeat(Math.max(0, 2 - trailingNewlines));
      return `${sep}data: ${JSON.stringify(openaiErrorBody(message))}\n\n`;
    }
    return undefined;
  }

  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      controller = c;
    },
    async pull(c) {
      pulling = true;
      idle.touch();
      try {
        const { value, done: end } = await reader.read();
        if (failure !== undefined) throw failure;
        if (end) {
          c.close();
          finish();
          return;
        }
        sent += value.byteLength;
        countNewlines(value);
        if (framing === "json") keepWhole(value);
        else if (framing !== "bytes") keepTail(value);
        c.enqueue(value);
        onChunk?.(value);
        // From here the caller's silence is timed.
        idle.touch();
      } catch (err) {
        reader.cancel(err).catch(() => {});
        fail(failure ?? err);
      } finally {
        pulling = false;
      }
    },
    cancel(reason) {
      reader.cancel(reason).catch(() => {});
      finish(new CallerGoneError("the caller closed the connection"));
    },
  }, { highWaterMark: 0 });

  function countNewlines(chunk: Uint8Array) {
    const n = trailingNewlinesOf(chunk);
    trailingNewlines = n === chunk.byteLength ? trailingNewlines + n : n;
  }

  // Keeps the bytes of the last non-empty line: after the last newline before the chunk's final
  // newlines (SSE ends each event with a blank line; NDJSON has none).
  function keepTail(chunk: Uint8Array) {
    const end = chunk.byteLength - trailingNewlinesOf(chunk);
    if (end === 0) {
      // Only newlines: the line kept so far is complete.
      if (chunk.byteLength > 0) tailComplete = true;
      return;
    }
    const cut = chunk.lastIndexOf(NL, end - 1);
    if (cut >= 0 || tailComplete) {
      tail = [chunk.subarray(cut + 1, end)];
      tailBytes = end - cut - 1;
    } else {
      tail.push(chunk.subarray(0, end));
      tailBytes += end;
    }
    tailComplete = end < chunk.byteLength;
    if (tailBytes > maxLine) {
      tail = [];
      throw new AnswerTooLargeError(maxLine, "line");
    }
  }

  function keepWhole(chunk: Uint8Array) {
    tail.push(chunk);
    tailBytes += chunk.byteLength;
    if (tailBytes > maxLine) {
      tail = [];
      throw new AnswerTooLargeError(maxLine);
    }
  }

  return { readable, done, sent: () => sent };
}

function trailingNewlinesOf(chunk: Uint8Array): number {
  let n = 0;
  while (n < chunk.byteLength && chunk[chunk.byteLength - 1 - n] === NL) n++;
  return n;
}

function whole(parts: Uint8Array[]): string {
  return new TextDecoder().decode(concat(parts));
}

function lastLine(parts: Uint8Array[]): string {
  const text = new TextDecoder().decode(concat(parts)).trim();
  const i = text.lastIndexOf("\n");
  return i >= 0 ? text.slice(i + 1) : text;
}
