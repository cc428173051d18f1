// Relays a target response body to a caller chunk by chunk, without parsing it: bytes go out as
// they arrive, pulled by the caller so backpressure reaches the target. Only the last line is kept
// (it carries the final metrics or a mid-stream {"error"}), up to a cap. One idle timer watches
// both ends: a target silent for the timeout has stalled, a caller that read nothing for it is gone.

import { concat } from "../bytes.ts";
import { AnswerTooLargeError, IdleTimer } from "../ollama/client.ts";

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
   * Whether the body is Ollama's NDJSON (the default): its last line is kept for `done`, and a
   * failure reaches the caller as a final {"error"} line. Otherwise nothing is kept, `done`
   * resolves with "", and a failure aborts the caller's stream.
   */
  ndjson?: boolean;
  /**
   * Sees each chunk as it goes to the caller (a progress counter); it must be quick and never
   * keep the chunk.
   */
  onChunk?: (chunk: Uint8Array) => void;
}

const NL = 10;

export function relay(body: ReadableStream<Uint8Array>, options: RelayOptions): Relay {
  const { idleTimeout, maxLine = Infinity, signal, ndjson = true, onChunk } = options;
  const reader = body.getReader();
  let sent = 0;
  let tail: Uint8Array[] = [];
  let tailBytes = 0;
  let tailComplete = false;
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
    if (err === undefined) resolveDone(lastLine(tail));
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
      if (ndjson && !(err instanceof CallerGoneError)) {
        // Ollama's convention for a failure after the first byte: one last {"error"} line, on a
        // line of its own even when the target was cut mid-line.
        const sep = sent > 0 && !tailComplete ? "\n" : "";
        const line = sep + JSON.stringify({ error: `foreman: ${(err as Error).message}` }) + "\n";
        controller.enqueue(new TextEncoder().encode(line));
        controller.close();
      } else {
        controller.error(err);
      }
    } catch {
      // the caller's stream was cancelled already
    }
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
        if (ndjson) keepTail(value);
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

  // Keeps the bytes of the last line: after the last newline that is not the chunk's final byte.
  function keepTail(chunk: Uint8Array) {
    if (chunk.byteLength === 0) return;
    let cut = -1;
    for (let i = chunk.byteLength - 2; i >= 0; i--) {
      if (chunk[i] === NL) {
        cut = i;
        break;
      }
    }
    if (cut >= 0 || tailComplete) {
      tail = [chunk.subarray(cut + 1)];
      tailBytes = chunk.byteLength - cut - 1;
    } else {
      tail.push(chunk);
      tailBytes += chunk.byteLength;
    }
    tailComplete = chunk[chunk.byteLength - 1] === NL;
    if (tailBytes > maxLine) {
      tail = [];
      throw new AnswerTooLargeError(maxLine, "line");
    }
  }

  return { readable, done, sent: () => sent };
}

function lastLine(parts: Uint8Array[]): string {
  const text = new TextDecoder().decode(concat(parts)).trim();
  const i = text.lastIndexOf("\n");
  return i >= 0 ? text.slice(i + 1) : text;
}

/**
 * Reads a whole body with the same stall rule, for async jobs whose result is stored; more than
 * `maxAnswer` bytes end it with AnswerTooLargeError, before they are held.
 */
export async function readAll(
  body: ReadableStream<Uint8Array>,
  options: { idleTimeout: number; maxAnswer?: number; signal?: AbortSignal },
): Promise<Uint8Array<ArrayBuffer>> {
  const maxAnswer = options.maxAnswer ?? Infinity;
  // Not read as NDJSON: the parts are the answer, no last line is kept beside them.
  const r = relay(body, { ...options, ndjson: false });
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of r.readable) {
    size += chunk.byteLength;
    // Leaving the loop cancels the relay, and with it the target's response.
    if (size > maxAnswer) throw new AnswerTooLargeError(maxAnswer);
    parts.push(chunk);
  }
  await r.done;
  return concat(parts);
}
