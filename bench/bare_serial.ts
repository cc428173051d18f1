// The ceiling of any one-at-a-time worker on this machine: the bare Deno proxy (bare_proxy.ts) with
// foreman's one rule of order, one request at the target at a time and its whole answer read
// before the next goes out, and nothing else: no auth, no database, no log. Prints
// {"listening": url} once it accepts connections.
//
//   deno run --allow-net=127.0.0.1 bench/bare_serial.ts http://127.0.0.1:PORT

const target = Deno.args[0];
if (!target) {
  console.error("usage: bare_serial.ts TARGET_URL");
  Deno.exit(2);
}
/** The queue: each request waits for the one before it to be answered in full. */
let tail: Promise<unknown> = Promise.resolve();

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: (addr) => console.log(JSON.stringify({ listening: `http://127.0.0.1:${addr.port}` })),
}, async (req) => {
  const url = new URL(req.url);
  const body = await req.arrayBuffer();
  const turn = Promise.withResolvers<void>();
  const before = tail;
  tail = turn.promise;
  await before;
  try {
    const res = await fetch(target + url.pathname, {
      method: req.method,
      headers: { "content-type": req.headers.get("content-type") ?? "application/json" },
      body,
    });
    const bytes = await res.arrayBuffer();
    return new Response(bytes, { status: res.status, headers: res.headers });
  } finally {
    turn.resolve();
  }
});

Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
