// The job lifecycle. Every job, whichever surface created it, moves through these states, and only
// through the named transitions in store.ts, each guarded by the state it expects to find.

/**
 * - `queued`: waiting for the worker. Entered on submit (HTTP handlers), and again when the worker
 *   gives a job back (target unreachable, retryable target error) or at start-up after a crash.
 * - `loading`: the worker took the job and is making its model resident (a swap or a cold load).
 * - `working`: inference runs at the target; a sync caller's response streams from here on.
 * - `done`: the target answered in full; result and artifacts stored. Terminal.
 * - `failed`: the target refused the job for good or attempts ran out. Terminal.
 * - `cancelled`: the caller went away, DELETE /jobs/{id}, or a sync job outlived a restart. Terminal.
 */
export type JobState = "queued" | "loading" | "working" | "done" | "failed" | "cancelled";

export const JOB_STATES: readonly JobState[] = [
  "queued",
  "loading",
  "working",
  "done",
  "failed",
  "cancelled",
];

export const TERMINAL_STATES: readonly JobState[] = ["done", "failed", "cancelled"];

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

/** Sync jobs come from /api/chat and /api/generate; async ones from POST /jobs. */
export type JobKind = "sync" | "async";

/** Which target route runs the job. */
export type Endpoint = "chat" | "generate";
