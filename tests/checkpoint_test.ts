// WAL checkpoints off the request path: the daemon's worker checkpoints while the target works and
// once the database is quiet, so the WAL stays bounded under constant load and its file is emptied
// when the load stops (SQLite's own checkpoint, inside a commit, is only a backstop far above).

import assert from "node:assert/strict";
import { waitFor } from "../harness/foreman.ts";
import { WAL_BACKSTOP } from "../src/queue/db.ts";
import { startStack } from "./support/stack.ts";

Deno.test("under constant load the worker keeps the WAL far below SQLite's backstop, and empties it once the database is quiet", async () => {
  const { fm, close } = await startStack({
    sim: { loadMs: 0, tokenMs: 0 },
    args: ["--poll-interval", "60s", "--log-level", "debug"],
  });
  const wal = `${fm.dbPath}-wal`;
  const walBytes = () => Deno.statSync(wal).size;
  try {
    const body = JSON.stringify({
      model: "tiny-a",
      stream: false,
      messages: [{ role: "user", content: "x" }],
      options: { num_predict: 1 },
    });
    // Four callers keep the queue from emptying: jobs follow one another with no quiet moment.
    let next = 0;
    const caller = async () => {
      while (next++ < 1500) {
        const res = await fetch(fm.url + "/api/chat", {
          method: "POST",
          headers: fm.headers(),
          body,
        });
        assert.equal(res.status, 200);
        await res.body?.cancel();
      }
    };
    await Promise.all([caller(), caller(), caller(), caller()]);
    // The file only grows: its size is the most the WAL ever held.
    const most = walBytes();
    const backstop = WAL_BACKSTOP * 4096;
    assert.ok(
      most < backstop / 2,
      `the WAL reached ${most} bytes (SQLite's backstop: ${backstop})`,
    );
    const checkpoints = fm.output().split("\n").filter((l) => l.includes("wal checkpointed"));
    assert.ok(checkpoints.length >= 5, `${checkpoints.length} checkpoints for 1500 jobs`);
    await waitFor(() => walBytes() === 0, { timeout: 10_000, what: "the WAL file emptied" });
    await fm.waitForOutput('"mode":"TRUNCATE"'); // its log line comes after the file is emptied
  } finally {
    await close();
  }
});
