// What the HTTP layer is built from: foreman's parts and the few settings its handlers read. The
// daemon (app.ts) builds one from the configuration; tests build one with the parts they use.
// Handlers never see the whole Config, so what a route depends on can be read here.

import type { Logger } from "../log.ts";
import type { Metrics } from "../metrics.ts";
import type { TargetClient } from "../ollama/client.ts";
import type { Inventory } from "../ollama/inventory.ts";
import type { GroupCommit } from "../queue/group_commit.ts";
import type { Store } from "../queue/store.ts";
import type { ViewOptions } from "../views.ts";
import type { Dispatcher } from "../webhooks/dispatcher.ts";
import type { Residency } from "../worker/residency.ts";
import type { Worker } from "../worker/worker.ts";
import type { BearerAuth } from "./auth.ts";
import type { BodyLimits } from "./body.ts";
import type { Watchers } from "./watch.ts";

/** The settings the handlers read (each named by the variable that sets it). */
export interface HttpSettings extends BodyLimits {
  /** Queued jobs accepted before new work gets 503 (FOREMAN_MAX_QUEUE). */
  maxQueue: number;
  /** The largest job metadata accepted, in bytes of JSON (FOREMAN_MAX_METADATA). */
  maxMetadata: number;
  /** The hosts webhooks may go to, as host or host:port (FOREMAN_WEBHOOK_HOSTS). */
  webhookHosts: readonly string[];
  /** Whether /api/pull, /api/create … reach the target (FOREMAN_ALLOW_MODEL_MANAGEMENT). */
  allowModelManagement: boolean;
  /** Whether /healthz shows the target, queue and models without a token (FOREMAN_HEALTH_DETAIL). */
  healthDetail: boolean;
}

export interface HttpDeps {
  settings: HttpSettings;
  auth: BearerAuth;
  store: Store;
  /** Inserts key-less submissions in shared transactions (ADR-0015). */
  groupCommit: GroupCommit;
  inventory: Inventory;
  residency: Residency;
  worker: Worker;
  dispatcher: Dispatcher;
  /** Long polls and event streams of jobs. */
  watchers: Watchers;
  client: TargetClient;
  views: ViewOptions;
  metrics: Metrics;
  log: Logger;
}
