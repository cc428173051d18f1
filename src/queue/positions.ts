// Where queued jobs stand in the order the worker will take them if nothing new arrives
// (drain-by-model): the resident model's jobs, then each other model's jobs grouped, groups by their
// oldest job. The store answers position() and positions() with it.

import type { Db } from "./db.ts";
import type { JobState } from "./states.ts";

/**
 * The 1-based places of the queued jobs among `jobs` (the others have none) while `resident` is
 * loaded, in three queries over the queued-by-model index, whatever its length: each model's
 * group, the page models' jobs older than the page, and a window numbering the jobs within the
 * page's id range. One job costs what counting the jobs ahead of it costs.
 */
export function queuePositions(
  db: Db,
  jobs: readonly { id: string; model: string; state: JobState }[],
  { resident }: { resident: string | undefined },
): Map<string, number> {
  const out = new Map<string, number>();
  const queued = jobs.filter((j) => j.state === "queued");
  const ids = queued.map((j) => j.id).sort();
  const [first, last] = [ids[0], ids.at(-1)];
  if (first === undefined || last === undefined) return out;
  const models = JSON.stringify([...new Set(queued.map((j) => j.model))]);
  const groups = new Map<string, { n: number; first: string }>();
  for (
    const g of db.stmt(
      "SELECT model, count(*) AS n, min(id) AS first FROM jobs WHERE state = 'queued' GROUP BY model",
    ).all()
  ) groups.set(String(g.model), { n: Number(g.n), first: String(g.first) });
  const older = new Map(
    db.stmt(
      `SELECT model, count(*) AS n FROM jobs WHERE state = 'queued'
         AND model IN (SELECT value FROM json_each(:models)) AND id < :first GROUP BY model`,
    ).all({ models, first }).map((r) => [String(r.model), Number(r.n)]),
  );
  const within = db.stmt(
    `SELECT id, n FROM (
       SELECT id, row_number() OVER (PARTITION BY model ORDER BY id) AS n FROM jobs
       WHERE state = 'queued' AND model IN (SELECT value FROM json_each(:models))
         AND id BETWEEN :first AND :last)
     WHERE id IN (SELECT value FROM json_each(:ids))`,
  ).all({ models, ids: JSON.stringify(ids), first, last });
  const rank = new Map(within.map((r) => [String(r.id), Number(r.n)]));
  const ahead = new Map<string, number>();
  for (const job of queued) {
    const own = groups.get(job.model);
    const n = rank.get(job.id);
    if (!own || n === undefined) continue; // taken by the worker since the page was read
    if (!ahead.has(job.model)) {
      let before = older.get(job.model) ?? 0;
      for (const [model, g] of groups) {
        if (model === job.model) continue;
        if (model === resident || (job.model !== resident && g.first < own.first)) before += g.n;
      }
      ahead.set(job.model, before);
    }
    out.set(job.id, ahead.get(job.model)! + n);
  }
  return out;
}
