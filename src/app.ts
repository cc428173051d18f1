// Wiring: builds foreman's parts from a Config, each after the parts it depends on, and runs them:
// the listener, the store (after crash recovery), the inventory poller, the worker, the webhook
// dispatcher, the pruner and the HTTP handler. Returns a handle whose stop() shuts everything down
// in order.

import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { within } from "./async.ts";
import { addrUrl } from "./config.ts";
import type { Config } from "./settings.ts";
import { BearerAuth } from "./http/auth.ts";
import type { HttpSettings } from "./http/deps.ts";
import { createHandler } from "./http/router.ts";
import { MAX_DRAIN, Watchers } from "./http/watch.ts";
import type { Logger } from "./log.ts";
import { Metrics } from "./metrics.ts";
import { TargetClient } from "./ollama/client.ts";
import { Inventory } from "./ollama/inventory.ts";
import { GroupCommit } from "./queue/group_commit.ts";
import { Pruner } from "./queue/pruner.ts";
import { Store } from "./queue/store.ts";
import { eventBody, type ViewOptions } from "./views.ts";
import { Dispatcher } from "./webhooks/dispatcher.ts";
import { Residency } from "./worker/residency.ts";
import { Worker } from "./worker/worker.ts";

export interface Daemon {
  /** The address actually listened on (port resolved when 0 was asked for). */
  addr: { hostname: string; port: number };
  url: string;
  stop(): Promise<void>;
  /** Settles when the server has stopped. */
  finished: Promise<void>;
}

/**
 * Timings that are no setting (nothing in a deployment needs them changed) but that a test of the
 * daemon shortens so it runs in seconds.
 */
export interface Tuning {
  /** The event streams' heartbeat period (HEARTBEAT) and drain bound (MAX_DRAIN), ms. */
  watch?: { heartbeat?: number; maxDrain?: number };
}

/** Longest wait at shutdown for responses still open (a caller that stopped reading). */
const SHUTDOWN_GRACE = 5000;
/** Longest wait at start for the first inventory poll, which tells the worker what is resident. */
const FIRST_POLL_WAIT = 2000;

export async function startDaemon(
  config: Config,
  log: Logger,
  tuning: Tuning = {},
): Promise<Daemon> {
  mkdirSync(dirname(config.db), { recursive: true });
  // The address is bound first: artifact links need the public URL, which may name the port the
  // OS picked, before anything that renders one is built.
  const listener = await listen(config.addr);
  try {
    return await run(config, log, listener, tuning);
  } catch (err) {
    await listener.fail(err);
    throw err;
  }
}

async function run(
  config: Config,
  log: Logger,
  listener: Listener,
  tuning: Tuning,
): Promise<Daemon> {
  const parts = build(config, { log, addr: listener.addr, tuning });
  connect(parts);
  recover(parts);
  registerGauges(parts);
  serve(listener, parts);
  const loops = await startLoops(parts);
  let stopping: Promise<void> | undefined;
  const stop = () => stopping ??= shutDown(parts, { server: listener.server, loops });

  // Ends when the server has drained, or when stop() gave up waiting for it.
  const stopped = Promise.withResolvers<void>();
  const finished = Promise.race([listener.server.finished, stopped.promise]);
  return {
    addr: listener.addr,
    url: addrUrl(listener.addr),
    stop: () => stop().finally(stopped.resolve),
    finished,
  };
}

/** foreman's parts, with the configuration they were built from and the logger they share. */
interface Parts {
  config: Config;
  log: Logger;
  views: ViewOptions;
  metrics: Metrics;
  store: Store;
  client: TargetClient;
  inventory: Inventory;
  residency: Residency;
  groupCommit: GroupCommit;
  worker: Worker;
  dispatcher: Dispatcher;
  pruner: Pruner;
  watchers: Watchers;
}

/** Opens the store and builds every part after the parts it depends on. */
function build(
  config: Config,
  { log, addr, tuning }: { log: Logger; addr: Listener["addr"]; tuning: Tuning },
): Parts {
  const views: ViewOptions = {
    publicUrl: config.publicUrl.replace(/\/+$/, "") || addrUrl(addr),
    inlineLimit: config.inlineLimit,
  };
  const metrics = new Metrics();
  // The worker checkpoints the WAL off the request path; SQLite only past its backstop.
  const store = new Store(config.db, {
    renderEvent: (job, event) => eventBody(job, event, views),
    checkpoints: "owner",
  });
  const client = new TargetClient({
    baseUrl: config.ollamaUrl,
    token: config.ollamaToken,
    timeout: config.targetTimeout,
    maxAnswer: config.maxAnswer,
  });
  const inventory = new Inventory({ client, store, log, interval: config.pollInterval });
  const residency = new Residency({
    client,
    inventory,
    log,
    metrics,
    embedModel: config.embedModel,
    keepAlive: config.keepAlive,
  });
  const groupCommit = new GroupCommit(store);
  const worker = new Worker({
    store,
    client,
    residency,
    log,
    metrics,
    maxAttempts: config.maxAttempts,
    maxWait: config.maxWait,
    keepAlive: config.keepAlive,
    retryBase: config.retryBase,
    pendingInserts: () => groupCommit.pending,
    checkpoints: true,
    // /healthz turns degraded (or back) when a job finds out, not at the next inventory poll.
    onTargetNews: () => void inventory.refresh(),
  });
  const dispatcher = new Dispatcher({
    outbox: store.outbox,
    log,
    metrics,
    secret: config.webhookSecret,
    maxAttempts: config.webhookMaxAttempts,
    retryBase: config.webhookRetryBase,
    timeout: config.webhookTimeout,
  });
  const pruner = new Pruner({ store, log, ttl: config.jobTtl });
  // A watcher that takes nothing for as long as a sync caller may is as gone as that caller, and
  // after MAX_DRAIN at most: its unread events wait in foreman's memory meanwhile.
  const watchers = new Watchers({
    store,
    progress: () => worker.progress,
    log,
    max: config.maxWatchers,
    drainTimeout: Math.min(config.targetTimeout, tuning.watch?.maxDrain ?? MAX_DRAIN),
    heartbeat: tuning.watch?.heartbeat,
  });
  return {
    config,
    log,
    views,
    metrics,
    store,
    client,
    inventory,
    residency,
    groupCommit,
    worker,
    dispatcher,
    pruner,
    watchers,
  };
}

/** News travels up: a part tells the loops built after it, which depend on it. */
function connect({ config, store, inventory, residency, worker, dispatcher }: Parts): void {
  // The dispatcher's wake only schedules; it reads the outbox after the writing transaction commits.
  store.outbox.onSendable(() => dispatcher.wake());
  let warming: Promise<boolean> | undefined;
  inventory.onPoll((snapshot, { cameBack }) => {
    if (cameBack) {
      residency.adopt(snapshot.ps.models);
      worker.wake();
    }
    if (config.embedModel && !residency.embedderResident(snapshot.ps.models)) {
      warming ??= residency.warmEmbedder().finally(() => warming = undefined);
    }
  });
}

/** Repairs what a crash left: sync jobs without their callers, async jobs cut mid-run. */
function recover({ config, store, log }: Parts): void {
  const recovered = store.recover(config.maxAttempts);
  if (recovered.requeued.length || recovered.cancelled.length || recovered.failed.length) {
    log.warn("recovered jobs interrupted by a restart", {
      requeued: recovered.requeued.length,
      cancelled: recovered.cancelled.length,
      failed: recovered.failed.length,
    });
  }
}

/** Hands the listener the HTTP handler: requests that came before it are answered now. */
function serve(listener: Listener, parts: Parts): void {
  const { config, log } = parts;
  const settings: HttpSettings = {
    maxBody: config.maxBody,
    bodyTimeout: config.bodyTimeout,
    maxQueue: config.maxQueue,
    maxMetadata: config.maxMetadata,
    webhookHosts: config.webhookHosts,
    allowModelManagement: config.allowModelManagement,
    healthDetail: config.healthDetail,
  };
  listener.serve(createHandler({
    settings,
    auth: new BearerAuth(config.tokens),
    store: parts.store,
    groupCommit: parts.groupCommit,
    inventory: parts.inventory,
    residency: parts.residency,
    worker: parts.worker,
    dispatcher: parts.dispatcher,
    watchers: parts.watchers,
    client: parts.client,
    views: parts.views,
    metrics: parts.metrics,
    log,
  }));
  const { addr } = listener;
  log.info("listening", {
    addr: `${addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname}:${addr.port}`,
    target: config.ollamaUrl,
    db: config.db,
    auth: config.tokens.length > 0 ? "bearer" : "none",
  });
}

/** The background loops running, and what ends them. */
interface Loops {
  abort: AbortController;
  running: Promise<void>[];
}

/** Starts the background loops: the poller, the worker, the dispatcher and the pruner. */
async function startLoops({ inventory, worker, dispatcher, pruner }: Parts): Promise<Loops> {
  // First poll before the worker starts, so it knows what is resident; never wait long for it.
  await within(inventory.refresh(), FIRST_POLL_WAIT);
  const abort = new AbortController();
  const running = [
    inventory.start(abort.signal),
    worker.start(abort.signal),
    dispatcher.start(abort.signal),
    pruner.start(abort.signal),
  ];
  return { abort, running };
}

/** Stops the loops, then the callers and watchers, then the server (within a grace), then the store. */
async function shutDown(
  { config, log, worker, watchers, store }: Parts,
  { server, loops }: { server: Deno.HttpServer; loops: Loops },
): Promise<void> {
  log.info("shutting down");
  loops.abort.abort();
  await Promise.allSettled(loops.running);
  worker.releaseCallers({
    status: 503,
    message: "foreman is shutting down; try again shortly",
  });
  // Long polls answer now; event streams end, and their clients resume with Last-Event-ID.
  watchers.close();
  // server.shutdown() waits for every open response, and a caller that stops reading would
  // hold one open for ever. Like a running caller, it gets the target timeout (at most
  // SHUTDOWN_GRACE) to finish; the process then ends and the kernel closes what is left.
  const grace = Math.min(SHUTDOWN_GRACE, config.targetTimeout);
  const drained = await within(server.shutdown().then(() => true), grace);
  if (!drained) {
    log.warn("connections still open at shutdown, closing them", { grace_ms: grace });
  }
  store.close();
  log.info("stopped");
}

type Handler = (req: Request) => Promise<Response>;

interface Listener {
  server: Deno.HttpServer;
  /** The address bound (the port resolved when 0 was asked for). */
  addr: { hostname: string; port: number };
  /** Starts answering with `handler`; requests that came before it waited for it. */
  serve(handler: Handler): void;
  /** Start-up failed: requests that waited get a 500, and the address is released. */
  fail(err: unknown): Promise<void>;
}

/** Binds `addr` now; requests are answered once a handler is given to serve(). */
async function listen(addr: Config["addr"]): Promise<Listener> {
  const ready = Promise.withResolvers<Handler>();
  ready.promise.catch(() => {}); // a failed start is reported by startDaemon
  let handle: Handler = async (req) => (await ready.promise)(req);
  const listening = Promise.withResolvers<Deno.NetAddr>();
  const server = Deno.serve({
    hostname: addr.hostname,
    port: addr.port,
    onListen: (bound) => listening.resolve(bound as Deno.NetAddr),
  }, (req) => handle(req));
  const bound = await listening.promise;
  return {
    server,
    addr: { hostname: bound.hostname, port: bound.port },
    serve: (handler) => {
      handle = handler;
      ready.resolve(handler);
    },
    fail: async (err) => {
      ready.reject(err);
      await server.shutdown();
    },
  };
}

function registerGauges({ config, metrics, store, inventory, watchers }: Parts): void {
  metrics.gauges.push(
    {
      name: "foreman_jobs",
      help: "Jobs in the database by state.",
      read: () =>
        Object.entries(store.countByState()).map(([state, value]) => ({
          labels: { state },
          value,
        })),
    },
    {
      name: "foreman_target_up",
      help: "1 when the last inventory poll reached the target.",
      read: () => [{ value: inventory.reachable ? 1 : 0 }],
    },
    {
      name: "foreman_inventory_age_seconds",
      help: "Seconds since the last successful inventory poll (-1 if none).",
      read: () => {
        const last = inventory.snapshot.lastPoll;
        return [{ value: last === null ? -1 : (Date.now() - last) / 1000 }];
      },
    },
    {
      // Exported so an alert can compare the queue with the limit without knowing the setting.
      name: "foreman_queue_limit",
      help: "Queued jobs accepted before new work gets 503 (FOREMAN_MAX_QUEUE).",
      read: () => [{ value: config.maxQueue }],
    },
    {
      name: "foreman_oldest_queued_seconds",
      help: "Seconds the oldest queued job has waited since submission (0 when none is queued).",
      read: () => {
        const oldest = store.oldestQueuedAt();
        return [{ value: oldest === null ? 0 : Math.max(0, (Date.now() - oldest) / 1000) }];
      },
    },
    {
      name: "foreman_webhook_events",
      help: "Webhook events in the outbox by state.",
      read: () =>
        Object.entries(store.outbox.countByState()).map(([state, value]) => ({
          labels: { state },
          value,
        })),
    },
    {
      name: "foreman_watchers",
      help: "Event streams and long polls of jobs open now (FOREMAN_MAX_WATCHERS caps them).",
      read: () => [{ value: watchers.count }],
    },
  );
}
