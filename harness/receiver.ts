// A real webhook receiver on 127.0.0.1 for tests: records every request and answers with a
// scripted sequence of statuses (the last one repeats).

export interface Received {
  at: number;
  path: string;
  headers: Headers;
  body: string;
  json: Record<string, unknown>;
}

export interface Receiver {
  url: string;
  port: number;
  received: Received[];
  /** Parsed bodies of successfully answered deliveries, in arrival order. */
  delivered(): Record<string, unknown>[];
  close(): Promise<void>;
}

export async function startReceiver(options: {
  statuses?: number[];
  headers?: Record<string, string>;
  delayMs?: number;
  port?: number;
} = {}): Promise<Receiver> {
  const statuses = options.statuses ?? [200];
  const received: Received[] = [];
  const ok: Record<string, unknown>[] = [];
  const ready = Promise.withResolvers<number>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: options.port ?? 0,
    onListen: (a) => ready.resolve(a.port),
  }, async (req) => {
    const body = await req.text();
    let json: Record<string, unknown> = {};
    try {
      json = JSON.parse(body);
    } catch { /* recorded as is */ }
    const status = statuses[Math.min(received.length, statuses.length - 1)] ?? 200;
    received.push({
      at: Date.now(),
      path: new URL(req.url).pathname,
      headers: req.headers,
      body,
      json,
    });
    if (options.delayMs) await new Promise((r) => setTimeout(r, options.delayMs));
    if (status >= 200 && status < 300) ok.push(json);
    return new Response(status === 204 || status === 304 ? null : "ok", {
      status,
      headers: options.headers,
    });
  });
  const port = await ready.promise;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    received,
    delivered: () => ok,
    close: () => server.shutdown(),
  };
}
