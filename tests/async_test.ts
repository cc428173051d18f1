// The waits the background loops sleep on: each ends at its deadline, when woken or when its
// signal aborts. (That no timer outlives a wait is checked in app_test.ts, where a leftover timer
// keeps a stopped daemon's process alive.)

import assert from "node:assert/strict";
import { sleep, WakeableSleep, within } from "../src/async.ts";

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
