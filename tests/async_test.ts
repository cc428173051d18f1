// The waits the background loops sleep on: each ends at its deadline, when woken or when its
// signal aborts. (That no timer outlives a wait is checked in app_test.ts, where a leftover timer
// keeps a stopped daemon's process alive.)

import assert from "node:assert/strict";
import { NextTurn, sleep, WakeableSleep, within } from "../src/async.ts";

Deno.test("a sleep ends early when its signal aborts, and at once when it was aborted already", async () => {
  const stop = new AbortController();
  const slept = sleep(60_000, stop.signal).then(() => "ended");
  stop.abort();
  assert.equal(await within(slept, 5000), "ended");
  assert.equal(await within(sleep(60_000, stop.signal).then(() => "ended"), 5000), "ended");
});

Deno.test("within gives the promise's value when it comes in time and undefined when not", async () => {
  assert.equal(await within(Promise.resolve("now"), 60_000), "now");
  const stop = new AbortController();
  assert.equal(await within(sleep(60_000, stop.signal).then(() => "late"), 10), undefined);
  stop.abort();
  await assert.rejects(within(Promise.reject(new Error("boom")), 60_000), /boom/);
});

Deno.test("a wakeable sleep ends when woken, long before its deadline", async () => {
  const idle = new WakeableSleep();
  const slept = idle.sleep(60_000).then(() => "woken");
  idle.wake();
  assert.equal(await within(slept, 5000), "woken");
});

Deno.test("a wake that comes while nobody sleeps ends the next sleep at once, and only that one", async () => {
  const idle = new WakeableSleep();
  idle.wake();
  assert.equal(await within(idle.sleep(60_000).then(() => "at once"), 5000), "at once");
  const stop = new AbortController();
  const next = idle.sleep(60_000, stop.signal).then(() => "ended");
  assert.equal(await within(next, 20), undefined, "the wake was used up by the sleep before");
  stop.abort();
  assert.equal(await next, "ended");
});

Deno.test("work after the next turn runs in order, and only once a request made before it has gone out", async () => {
  const turn = new NextTurn();
  try {
    const order: string[] = [];
    turn.run(() => order.push("first"));
    turn.run(() => order.push("second"));
    await turn.wait();
    assert.deepEqual(order, ["first", "second"]);

    // A server in another process answers a first request and marks a file when a second one
    // reaches it over the same connection (the worker's requests to its target reuse one; a new
    // connection takes more turns to open). The work blocks this event loop until the mark is
    // there: it can only see it if the request left before the work ran.
    const dir = await Deno.makeTempDir();
    const server = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
         console.log(l.addr.port);
         const c = await l.accept();
         await c.read(new Uint8Array(4096));
         await c.write(new TextEncoder().encode("HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok"));
         await c.read(new Uint8Array(4096));
         Deno.writeTextFileSync(${JSON.stringify(`${dir}/arrived`)}, "");
         setTimeout(() => Deno.exit(0), 5000);`,
      ],
      stdout: "piped",
    }).spawn();
    const port = (await server.stdout.pipeThrough(new TextDecoderStream()).getReader().read())
      .value!.trim();
    assert.equal(await (await fetch(`http://127.0.0.1:${port}/`)).text(), "ok");
    const request = fetch(`http://127.0.0.1:${port}/`).catch(() => {});
    const seen = await new Promise<boolean>((resolve) =>
      turn.run(() => {
        const deadline = performance.now() + 3000;
        while (performance.now() < deadline) {
          try {
            Deno.statSync(`${dir}/arrived`);
            return resolve(true);
          } catch { /* not yet */ }
        }
        resolve(false);
      })
    );
    assert.ok(seen, "the request reached the server before the work ran");
    server.kill();
    await server.status;
    await request;
  } finally {
    turn.close();
  }
});
