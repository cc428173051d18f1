// Fault injection for the crash suites: the next requests fail with a given status, stall with the
// connection open and the model busy, or lose their connection, before the headers or after some
// chunks (see OllamaSim.failNext, stallNext and dropNext).

import { type Ctx, INFERENCE_PATHS } from "./http.ts";
import { aborted } from "./time.ts";

/** Body-stream error that stands for a dropped connection; the server's onError keeps it quiet. */
export const DROPPED = new Error("ollama_sim: connection dropped on purpose");

export interface Fault {
  kind: "fail" | "stall" | "drop";
  remaining: number;
  status: number;
  error: string;
  /** Stall or drop after this many chunks of an answer; 0: before the headers. */
  afterChunks: number;
  /** Only requests to this path; by default the generation routes. */
  path?: string;
}

/** Faults waiting for their requests, first armed first taken. */
export class Faults {
  #list: Fault[] = [];

  add(kind: Fault["kind"], n: number, opts: Partial<Fault> = {}): void {
    this.#list.push({ kind, remaining: n, status: 0, error: "", afterChunks: 0, ...opts });
  }

  /** A fault of `kind` for a request to `path`, counted as used. */
  take(kind: Fault["kind"], path: string): Fault | undefined {
    const f = this.#list.find((f) =>
      f.kind === kind && f.remaining > 0 &&
      (f.path ? f.path === path : INFERENCE_PATHS.includes(path))
    );
    if (!f) return undefined;
    f.remaining--;
    if (f.remaining <= 0) this.#list = this.#list.filter((x) => x !== f);
    return f;
  }
}

/** A stall or drop at the point where a response would go out. */
export async function inflict(fault: Fault, ctx: Ctx): Promise<Response> {
  ctx.fault = undefined;
  if (fault.kind === "stall") await aborted(ctx.signal);
  else if (ctx.conn) ctx.conn.kill();
  else return new Response(new ReadableStream({ start: (c) => c.error(DROPPED) }));
  return new Response(null, { status: 499 }); // nobody is there to read it
}
