// The floor for any proxy written like foreman: a bare Deno.serve that relays each request to the
// target with fetch and streams the answer back, with no auth, queue or database. The benchmark
// runs it as its own process and prints {"listening": url} once it accepts connections.
//
//   deno run --allow-net=127.0.0.1 bench/bare_proxy.ts http://127.0.0.1:PORT

const target = Deno.args[0];
if (!target) {
  console.error("usage: bare_proxy.ts TARGET_URL");
  Deno.exit(2);
}

const server = Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: (addr) => console.log(JSON.stringify({ listening: `http://127.0.0.1:${addr.port}` })),
}, async (req) => {
  const url = new URL(req.url);
  const res = await fetch(target + url.pathname, {
    method: req.method,
    headers: { "content-type": req.headers.get("content-type") ?? "application/json" },
    body: req.body,
    signal: req.signal,
  });
  return new Response(res.body, { status: res.status, headers: res.headers });
});

Deno.addSignalListener("SIGTERM", () => server.shutdown());
await server.finished;
