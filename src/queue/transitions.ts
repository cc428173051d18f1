// The named transitions of a job and the values each one needs. Nothing else in foreman writes
// jobs.state: Store.transition runs an entry of TRANSITIONS as one UPDATE guarded by the state it
// found, and writes the webhook event that reports the change in the same transaction.
//
// Adding a transition: its values in TransitionValues (the type checker then makes every caller
// pass them), its entry in TRANSITIONS (from, to, extra SET, how the values bind), CHECK
// constraints in schema.ts for what the new state implies (a migration if the schema changes),
// and a test in tests/store_test.ts.

import type { Params } from "./db.ts";
import { ACTIVE_STATES, type JobState, OPEN_STATES } from "./states.ts";
import type { Artifact } from "./artifacts.ts";

type NoValues = Record<never, never>;

/** What each transition needs from its caller. */
export interface TransitionValues {
  /** The worker takes a queued job: counts an attempt. */
  claim: NoValues;
  /** The model is resident; inference starts. */
  startWorking: NoValues;
  /** The target answered in full: its final response, and the artifacts stored with it. */
  complete: { result: string; artifacts?: readonly Artifact[] };
  /** Attempts ran out or the target refused the request for good. */
  fail: { error: string };
  /**
   * Back to the queue, not to be taken before `notBefore` (epoch ms; 0 for at once). `refund`
   * gives the attempt back: the failure was not the job's (target unreachable, a restart).
   */
  requeue: { error: string; notBefore: number; refund: boolean };
  /** The caller gave up, or the job outlived its sync caller. */
  cancel: { error: string };
}

export type TransitionName = keyof TransitionValues;

/** The values argument of a transition: required unless the transition needs none. */
export type ValuesArg<N extends TransitionName> = NoValues extends TransitionValues[N]
  ? [values?: TransitionValues[N]]
  : [values: TransitionValues[N]];

export interface TransitionSpec<V> {
  from: readonly JobState[];
  to: JobState;
  /** Extra assignments after `state` and `updated_at = :now`; `:now` and `:id` are always bound. */
  set: string;
  /** Binds the caller's values to the named parameters of `set`, and nothing else. */
  bind?: (values: V, params: Params) => void;
  /** Artifacts written with the change, in its transaction. */
  artifacts?: (values: V) => readonly Artifact[] | undefined;
  /** The result `set` writes, which the transition reports without reading it back. */
  result?: (values: V) => string;
}

export const TRANSITIONS: { readonly [N in TransitionName]: TransitionSpec<TransitionValues[N]> } =
  {
    claim: {
      from: ["queued"],
      to: "loading",
      set: "attempt = attempt + 1, started_at = coalesce(started_at, :now), error = NULL",
    },
    startWorking: { from: ["loading"], to: "working", set: "" },
    complete: {
      from: ["working"],
      to: "done",
      set: "result = :result, finished_at = :now",
      bind: (v, p) => p.result = v.result,
      artifacts: (v) => v.artifacts,
      result: (v) => v.result,
    },
    fail: {
      from: OPEN_STATES,
      to: "failed",
      set: "error = :error, finished_at = :now",
      bind: (v, p) => p.error = v.error,
    },
    requeue: {
      from: ACTIVE_STATES,
      to: "queued",
      set: "error = :error, not_before = :not_before, attempt = attempt - :refund",
      bind: (v, p) => {
        p.error = v.error;
        p.not_before = v.notBefore;
        p.refund = v.refund ? 1 : 0;
      },
    },
    cancel: {
      from: OPEN_STATES,
      to: "cancelled",
      set: "error = :error, finished_at = :now",
      bind: (v, p) => p.error = v.error,
    },
  };

/** What an insert or a transition reads back: every column but the request and the result. */
export const MOVED_COLUMNS = `id, kind, endpoint, model, state, webhook_url, metadata,
  idempotency_key, request_hash, attempt, not_before, error, created_at, updated_at, started_at,
  finished_at`;

/** Each transition's guarded UPDATE, built once: it changes the row only if the state is `:from`. */
export const UPDATE_SQL = Object.fromEntries(
  Object.entries(TRANSITIONS).map(([name, spec]) => {
    const set = spec.set ? `, ${spec.set}` : "";
    const sql = `UPDATE jobs SET state = '${spec.to}', updated_at = :now${set}
      WHERE id = :id AND state = :from RETURNING ${MOVED_COLUMNS}`;
    return [name, sql];
  }),
) as Record<TransitionName, string>;

/** Raised when a guarded transition finds the job in another state than it expects. */
export class TransitionError extends Error {
  override name = "TransitionError";
  constructor(
    readonly jobId: string,
    readonly from: readonly JobState[],
    readonly found?: JobState,
  ) {
    super(
      found
        ? `Cannot move job ${jobId} from ${found}: expected ${from.join(" or ")}`
        : `Cannot move job ${jobId}: no such job`,
    );
  }
}
