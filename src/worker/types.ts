// What the worker and its callers exchange: a sync caller and the answer or failure it gets, what
// one step of the worker did, and the parts and settings a worker is built from. The HTTP layer
// shapes the answer for its caller; the worker only hands it over.

import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { TargetClient } from "../ollama/client.ts";
import type { Store } from "../queue/store.ts";
import type { Residency } from "./residency.ts";

/**
 * The target's answer to a sync job, as the worker hands it over: the target's status and headers
 * as sent, and its body: the bytes of a whole answer (read in full first), or a stream as relayed
 * (under the relay's deadlines; a failure after the first byte arrives as a final {"error"} line,
 * or a `data: {"error": …}` event on /v1). How a caller sees it is the HTTP layer's business.
 */
export interface Answer {
  status: number;
  headers: Headers;
  body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer>;
}

/** Why a sync caller gets no answer: its job failed or was cancelled, or foreman is stopping. */
export interface Failure {
  status: number;
  message: string;
}

/** A caller waiting on a sync job. The worker calls one of these, once, and then forgets it. */
export interface Caller {
  /** The target answers: a stream from its first chunk, or a whole answer read in full. */
  answer(answer: Answer): void;
  /** The job ended before the target answered. */
  fail(failure: Failure): void;
}

export interface WorkerOptions {
  store: Store;
  client: TargetClient;
  residency: Residency;
  log: Logger;
  metrics: Metrics;
  maxAttempts: number;
  maxWait: number;
  keepAlive: number;
  retryBase: number;
  /** Jobs accepted but not yet stored (group commit): they are queued ahead of a new sync job. */
  pendingInserts?: () => number;
  /**
   * Told when a job finds the target unreachable, and when one reaches it again after that, so
   * whatever reports the target's health looks again now rather than at its next poll. It must
   * only start that work, never wait for it.
   */
  onTargetNews?: () => void;
  /**
   * Whether the worker checkpoints the WAL (the store was opened with checkpoints: "owner"): while
   * the target works on a job, when commits have piled up, and once the database is quiet.
   */
  checkpoints?: boolean;
  now?: () => number;
}

/** What one step of the worker did, for tests and logs. */
export type Outcome =
  | { job: string; outcome: "done" | "failed" | "cancelled" }
  | { job: string; outcome: "requeued"; reason: string };
