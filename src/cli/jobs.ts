// `foreman jobs`: the newest jobs of a running foreman (GET /jobs) as a table of id, state, model
// and age, or as JSON for scripts.

import { parseArgs } from "node:util";
import type { ForemanClient } from "./client.ts";
import { age, table } from "./format.ts";
import type { Io } from "./io.ts";

export const JOBS_USAGE = `usage: foreman jobs [flags]

Lists jobs on a running foreman, newest first.

      --state STATE   only jobs in this state (queued, loading, working, done, failed, cancelled)
      --model NAME    only jobs for this model
  -n, --limit N       at most N jobs (default: foreman's page size)
      --json          print the jobs as JSON

env: FOREMAN_URL (default http://127.0.0.1:8080), FOREMAN_TOKEN`;

interface JobRow {
  job_id: string;
  state: string;
  model: string;
  created_at: string;
}

export async function jobs(args: string[], io: Io, client: () => ForemanClient): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      state: { type: "string" },
      model: { type: "string" },
      limit: { type: "string", short: "n" },
      json: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    io.out(JOBS_USAGE);
    return 0;
  }
  const query = new URLSearchParams();
  if (values.state !== undefined) query.set("state", values.state);
  if (values.model !== undefined) query.set("model", values.model);
  if (values.limit !== undefined) query.set("limit", values.limit);
  const qs = query.size > 0 ? `?${query}` : "";
  const { body } = await client().json<{ jobs: JobRow[] }>("GET", `/jobs${qs}`);
  if (values.json) {
    io.out(JSON.stringify(body.jobs, null, 2));
    return 0;
  }
  if (body.jobs.length === 0) {
    io.err("no jobs");
    return 0;
  }
  const now = io.now();
  const rows = body.jobs.map((
    j,
  ) => [j.job_id, j.state, j.model, age(now - Date.parse(j.created_at))]);
  for (const line of table([["ID", "STATE", "MODEL", "AGE"], ...rows])) io.out(line);
  return 0;
}
