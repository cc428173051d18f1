// The lifecycles: of a job, and of the event that reports each of its changes. Every job,
// whichever surface created it, moves only through the named transitions in transitions.ts; every
// event only through the outbox's writes in outbox.ts. Each list here is the one spelling of its
// states: the SQL and the HTTP checks are built from it, and a test holds the schema's CHECKs to it.

/**
 * - `queued`: waiting for the worker. Entered on submit (HTTP handlers), and again when the worker
 *   gives a job back (target unreachable, retryable target error) or at start-up after a crash.
 * - `loading`: the worker took the job and is making its model resident (a swap or a cold load).
 * - `working`: inference runs at the target; a sync caller's response streams from here on.
 * - `done`: the target answered in full; result and artifacts stored. Terminal.
 * - `failed`: the target refused the job for good or attempts ran out. Terminal.
 * - `cancelled`: the caller went away, DELETE /jobs/{id}, or a sync job outlived a restart. Terminal.
 */
export type JobState = (typeof JOB_STATES)[number];

export const JOB_STATES = ["queued", "loading", "working", "done", "failed", "cancelled"] as const;

/** States the worker holds a job in: at most one job is in one of them while foreman runs. */
export const ACTIVE_STATES: readonly JobState[] = ["loading", "working"];

/** States a job never leaves; exactly these have a finished_at. */
export const TERMINAL_STATES: readonly JobState[] = ["done", "failed", "cancelled"];

/** States a job can still be cancelled or failed from. */
export const OPEN_STATES: readonly JobState[] = JOB_STATES.filter((s) => !isTerminal(s));

export function isTerminal(state: JobState): boolean {
  return TERMINAL_STATES.includes(state);
}

/**
 * An event in the outbox: one row per job change, for every job (ADR-0017). Its body is the
 * webhook event JSON; watchers read it whether or not it is ever sent.
 * - `pending`: to be sent to the job's webhook. Written by the store in the transaction of the job
 *   change it reports; `held` while an earlier event of the same job is still pending, so a job's
 *   events go in order. Stays pending through retries (the dispatcher's markRetry).
 * - `delivered`: the receiver answered 2xx (the dispatcher's markDelivered). Terminal.
 * - `dead`: attempts ran out (markDead), or the receiver answered 410 Gone for the job, which kills
 *   its pending events (markJobEventsDead) and every later one as it is written. Terminal.
 * - `local`: the job has no webhook: nothing to deliver, the row is kept for watchers only.
 *   Written so and never changed; the delivery columns stay empty (the schema's CHECKs).
 * Events of a finished job are pruned with it once none is pending.
 */
export type EventState = (typeof EVENT_STATES)[number];

/** The states of an event that has a receiver: what webhook metrics and summaries count. */
export const DELIVERY_STATES = ["pending", "delivered", "dead"] as const;

export type DeliveryState = (typeof DELIVERY_STATES)[number];

export const EVENT_STATES = [...DELIVERY_STATES, "local"] as const;

/** Sync jobs come from /api/chat, /api/generate and the /v1 completions; async ones from /jobs. */
export type JobKind = "sync" | "async";

/**
 * Which target route runs the job: Ollama's native /api/chat and /api/generate, or its
 * OpenAI-compatible /v1/chat/completions and /v1/completions (ADR-0016), whose answers are
 * relayed and stored in OpenAI's shape.
 */
export type Endpoint = (typeof ENDPOINTS)[number];

export const ENDPOINTS = ["chat", "generate", "openai.chat", "openai.completions"] as const;

/** Whether a job of `endpoint` speaks OpenAI's dialect (a /v1 route at the target). */
export function isOpenAI(endpoint: Endpoint): endpoint is "openai.chat" | "openai.completions" {
  return endpoint === "openai.chat" || endpoint === "openai.completions";
}

/** A list of states as SQL: ('queued', 'loading'). States are fixed words, never user input. */
export function sqlList(states: readonly string[]): string {
  return `(${states.map((s) => `'${s}'`).join(", ")})`;
}
