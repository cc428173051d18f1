// Reads a job's event stream (GET /jobs/{id}/events, Server-Sent Events) for `submit --wait`: one
// parsed event at a time, with a deadline on silence, since foreman sends a comment every 15 s
// and a stream that says nothing for longer has been cut somewhere on the way.

/** One event of the stream; `id` is absent on progress events, which are never replayed. */
export interface StreamEvent {
  id?: string;
  event: string;
  data: string;
}

/** Three heartbeats missed: the connection is gone even if no socket said so. */
export const SILENCE_MS = 45_000;

/**
 * The events of `body` as they arrive. Ends when the stream ends; throws when it breaks or stays
 * silent for `silence` ms (then the body is cancelled).
 */
export async function* readEvents(
  body: ReadableStream<Uint8Array>,
  options: { silence?: number } = {},
): AsyncGenerator<StreamEvent> {
  const silence = options.silence ?? SILENCE_MS;
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let current: { id?: string; event?: string; data?: string[] } = {};
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const quiet = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`the event stream said nothing for ${silence / 1000}s`)),
          silence,
        );
      });
      let chunk: ReadableStreamReadResult<string>;
      try {
        chunk = await Promise.race([reader.read(), quiet]);
      } finally {
        clearTimeout(timer);
      }
      if (chunk.done) return;
      buffer += chunk.value;
      for (let nl = buffer.indexOf("\n"); nl !== -1; nl = buffer.indexOf("\n")) {
        const line = buffer.slice(0, nl).replace(/\r$/, "");
        buffer = buffer.slice(nl + 1);
        if (line === "") {
          if (current.data !== undefined) {
            yield {
              id: current.id,
              event: current.event ?? "message",
              data: current.data.join("\n"),
            };
          }
          current = {};
          continue;
        }
        if (line.startsWith(":")) continue; // a heartbeat
        const colon = line.indexOf(":");
        const field = colon === -1 ? line : line.slice(0, colon);
        const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
        if (field === "data") (current.data ??= []).push(value);
        else if (field === "id") current.id = value;
        else if (field === "event") current.event = value;
      }
    }
  } finally {
    reader.cancel().catch(() => {});
  }
}
