// Relays a target response body to a sync caller chunk by chunk, without parsing it: bytes go out
// as they arrive, pulled by the caller so backpressure reaches the target. Only the last line is
// kept (it carries the final metrics or a mid-stream {"error"}), and silence longer than the
// target timeout counts as a stall.

export class StallError extends Error {
  override name = "StallError";
}

export class CallerGoneError extends Error {
  override name = "CallerGoneError";
}

export interface Relay {
  /** The stream to hand to the caller's Response. */
  readable: ReadableStream<Uint8Array>;
  /**
   * Settles when the relay ends: resolves with the last complete line of the body (or the whole
   * body when it has no newline); rejects with StallError, CallerGoneError or the read error.
   */
  done: Promise<string>;
  /** Bytes handed to the caller so far. */
  sent(): number;
}

const NL = 10;

export function relay(body: ReadableStream<Uint8Array>, options: { idleTimeout: number }): Relay {
  const reader = body.getReader();
  let sent = 0;
  let tail: Uint8Array[] = [];
  let tailComplete = false;
  let settled = false;
  let resolveDone!: (last: string) => void;
  let rejectDone!: (err: unknown) => void;
  const done = new Promise<string>((res, rej) => {
    resolveDone = res;
    rejectDone = rej;
  });
  done.catch(() => {}); // observed by the worker; avoid unhandled rejection noise
  const finish = (err?: unknown) => {
    if (settled) return;
    settled = true;
    if (err === undefined) resolveDone(lastLine(tail));
    else rejectDone(err);
  };

  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const stalled = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new StallError(`the target sent nothing for ${options.idleTimeout} ms`)),
          options.idleTimeout,
        );
      });
      try {
        const { value, done: end } = await Promise.race([reader.read(), stalled]);
        if (end) {
          controller.close();
          finish();
          return;
        }
        sent += value.byteLength;
        keepTail(value);
        controller.enqueue(value);
      } catch (err) {
        reader.cancel(err).catch(() => {});
        finish(err);
        // Ollama's convention for a failure after the first byte: one last {"error"} line.
        const line = JSON.stringify({ error: `foreman: ${(err as Error).message}` }) + "\n";
        controller.enqueue(new TextEncoder().encode(line));
        controller.close();
      } finally {
        clearTimeout(timer);
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
    if (cut >= 0 || tailComplete) tail = [chunk.subarray(cut + 1)];
    else tail.push(chunk);
    tailComplete = chunk[chunk.byteLength - 1] === NL;
  }

  return { readable, done, sent: () => sent };
}

function lastLine(parts: Uint8Array[]): string {
  const text = new TextDecoder().decode(concat(parts)).trim();
  const i = text.lastIndexOf("\n");
  return i >= 0 ? text.slice(i + 1) : text;
}

function concat(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  if (parts.length === 1) return parts[0] as Uint8Array<ArrayBuffer>;
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

/** Reads a whole body with the same stall rule, for async jobs whose result is stored. */
export async function readAll(
  body: ReadableStream<Uint8Array>,
  options: { idleTimeout: number },
): Promise<Uint8Array<ArrayBuffer>> {
  const r = relay(body, options);
  const parts: Uint8Array[] = [];
  for await (const chunk of r.readable) parts.push(chunk);
  await r.done;
  return concat(parts);
}
