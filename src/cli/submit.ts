// `foreman submit`: queues a job on POST /jobs from flags or from a request piped on stdin, and with
// --wait follows it to the end on its event stream (polling where there is none), showing each
// state change and its progress on stderr and printing the answer on stdout so the command
// composes in shell pipelines.

import { parseArgs } from "node:util";
import { CliError, type ForemanClient, UsageError } from "./client.ts";
import { readEvents, type StreamEvent } from "./events.ts";
import type { Io } from "./io.ts";

export const SUBMIT_USAGE = `usage: foreman submit [flags] [prompt...]

Queues a chat job on a running foreman (POST /jobs) and prints its id.
The prompt comes from --prompt, the remaining arguments, or stdin. A JSON object on stdin is sent
as the whole request body (any /jobs payload); --model then overrides its model.

  -m, --model NAME        model to run (required unless the JSON body names one)
  -p, --prompt TEXT       the user message
  -s, --system TEXT       a system message
      --generate          send a generate request (prompt/system) instead of chat
      --webhook URL       state_webhook_url (its host must be in the daemon's FOREMAN_WEBHOOK_HOSTS)
      --metadata JSON     a JSON object stored with the job and echoed in webhooks (at most
                          the daemon's FOREMAN_MAX_METADATA, 64 KiB by default)
      --idempotency-key K send Idempotency-Key: K
  -w, --wait              follow the job: state changes and progress on stderr, the answer on
                          stdout (from the job's event stream; polls a foreman without one)
      --json              with --wait, print the final job object instead of the answer
      --interval MS       polling period for --wait when it cannot stream (default 250)

env: FOREMAN_URL (default http://127.0.0.1:8080), FOREMAN_TOKEN`;

const TERMINAL = new Set(["done", "failed", "cancelled"]);

type Job = Record<string, unknown> & {
  job_id: string;
  state: string;
  position?: number | null;
  error?: string | null;
  result?: Record<string, unknown> | null;
  artifacts?: { name: string }[];
};

export async function submit(args: string[], io: Io, client: () => ForemanClient): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: {
      model: { type: "string", short: "m" },
      prompt: { type: "string", short: "p" },
      system: { type: "string", short: "s" },
      generate: { type: "boolean" },
      webhook: { type: "string" },
      metadata: { type: "string" },
      "idempotency-key": { type: "string" },
      wait: { type: "boolean", short: "w" },
      json: { type: "boolean" },
      interval: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
    allowPositionals: true,
  });
  if (values.help) {
    io.out(SUBMIT_USAGE);
    return 0;
  }
  const interval = values.interval === undefined ? 250 : Number(values.interval);
  if (!Number.isInteger(interval) || interval < 10) {
    throw new UsageError(`--interval must be a whole number of milliseconds (10 or more)`);
  }

  let prompt = values.prompt ?? (positionals.length > 0 ? positionals.join(" ") : undefined);
  let body: Record<string, unknown> | undefined;
  if (prompt === undefined) {
    const piped = (await io.readStdin())?.trim();
    if (piped?.startsWith("{")) body = parseObject(piped, "the JSON body on stdin");
    else if (piped) prompt = piped;
  }
  if (body === undefined) {
    if (prompt === undefined) {
      throw new UsageError(
        "nothing to submit: give --prompt, a prompt argument, or pipe one on stdin",
      );
    }
    body = values.generate
      ? {
        endpoint: "generate",
        prompt,
        ...(values.system !== undefined ? { system: values.system } : {}),
      }
      : {
        messages: [
          ...(values.system !== undefined ? [{ role: "system", content: values.system }] : []),
          { role: "user", content: prompt },
        ],
      };
  }
  if (values.model !== undefined) body.model = values.model;
  if (typeof body.model !== "string" || body.model === "") {
    throw new UsageError('--model is required (or a JSON body on stdin with a "model")');
  }
  if (values.webhook !== undefined) body.state_webhook_url = values.webhook;
  if (values.metadata !== undefined) body.metadata = parseObject(values.metadata, "--metadata");

  const fm = client();
  const headers: Record<string, string> = {};
  if (values["idempotency-key"] !== undefined) {
    headers["idempotency-key"] = values["idempotency-key"];
  }
  const { body: accepted } = await fm.json<{ job_id: string }>("POST", "/jobs", { body, headers });
  const id = accepted.job_id;
  if (!values.wait) {
    io.out(id);
    return 0;
  }
  return await follow(fm, id, io, { interval, json: values.json ?? false });
}

/** A progress line at most this often: a long job shows it is alive without flooding stderr. */
const PROGRESS_EVERY = 5000;
/** Reconnections to a stream that broke (foreman restarting) before the command gives up. */
const RECONNECTS = 10;

/** Follows job `id` until it ends, prints what it produced; returns the exit code. */
async function follow(
  fm: ForemanClient,
  id: string,
  io: Io,
  options: { interval: number; json: boolean },
): Promise<number> {
  const started = io.now();
  let shownState = "";
  let progressAt = -Infinity;
  const show = (line: string) => {
    const elapsed = ((io.now() - started) / 1000).toFixed(1);
    io.err(`${id} ${line} (${elapsed}s)`);
  };
  const onState = (state: string, line: string) => {
    if (state === shownState) return;
    shownState = state;
    show(line);
  };
  // The job as it is first, with its queue position, which events do not carry.
  let job = (await fm.json<Job>("GET", `/jobs/${id}`)).body;
  onState(job.state, describe(job));
  if (!TERMINAL.has(job.state)) {
    const streamed = await streamEvents(fm, id, io, (e) => {
      if (e.event === "progress") {
        if (io.now() - progressAt < PROGRESS_EVERY) return;
        progressAt = io.now();
        show(describeProgress(JSON.parse(e.data)));
        return;
      }
      const event = JSON.parse(e.data) as Job;
      onState(event.state, describe(event));
    });
    job = streamed
      ? (await fm.json<Job>("GET", `/jobs/${id}`)).body
      : await poll(fm, id, io, { interval: options.interval, onState });
  }
  if (job.state !== "done") {
    if (options.json) io.out(JSON.stringify(job, null, 2));
    return 1;
  }
  if (options.json) {
    io.out(JSON.stringify(job, null, 2));
    return 0;
  }
  const result = job.result ?? await completion(fm, job);
  io.out(answer(result));
  return 0;
}

/**
 * Reads the job's event stream until its terminal event, resuming with Last-Event-ID when the
 * connection breaks (a restart of foreman). Returns false when foreman will not stream it (too
 * many watchers, or a foreman from before event streams): the caller polls instead.
 */
async function streamEvents(
  fm: ForemanClient,
  id: string,
  io: Io,
  onEvent: (e: StreamEvent) => void,
): Promise<boolean> {
  let lastId: string | undefined;
  let broken = 0;
  for (;;) {
    let res: Response;
    try {
      res = await fm.fetch("GET", `/jobs/${id}/events`, {
        stream: true,
        headers: lastId === undefined ? {} : { "last-event-id": lastId },
      });
    } catch (err) {
      if (err instanceof CliError && err.status !== undefined) return false;
      if (++broken > RECONNECTS) throw err;
      await io.sleep(1000);
      continue;
    }
    // 204: the job ended and nothing came after the last event seen.
    if (res.status === 204 || !res.body) return true;
    try {
      for await (const e of readEvents(res.body)) {
        broken = 0;
        if (e.id !== undefined) lastId = e.id;
        onEvent(e);
        if (TERMINAL.has(e.event)) return true;
      }
    } catch (err) {
      if (++broken > RECONNECTS) {
        throw new CliError(`the event stream of job ${id} broke: ${(err as Error).message}`);
      }
    }
    await io.sleep(1000);
  }
}

/** Polls GET /jobs/{id} until the job ends. */
async function poll(
  fm: ForemanClient,
  id: string,
  io: Io,
  options: { interval: number; onState: (state: string, line: string) => void },
): Promise<Job> {
  for (;;) {
    await io.sleep(options.interval);
    const job = (await fm.json<Job>("GET", `/jobs/${id}`)).body;
    options.onState(job.state, describe(job));
    if (TERMINAL.has(job.state)) return job;
  }
}

/** A progress event as a line: tokens where the answer streams, else only that it goes on. */
function describeProgress(p: { tokens: number | null; tokens_per_second: number | null }): string {
  if (p.tokens === null) return "still working";
  const rate = p.tokens_per_second === null ? "" : `, ${p.tokens_per_second} tokens/s`;
  return `working: ${p.tokens} tokens${rate}`;
}

function describe(job: Job): string {
  if (job.state === "queued" && typeof job.position === "number") {
    return `queued (position ${job.position})`;
  }
  if (job.state === "failed" && job.error) return `failed: ${job.error}`;
  return job.state;
}

/** A result too large to inline: read the "completion" artifact instead. */
async function completion(fm: ForemanClient, job: Job): Promise<Record<string, unknown>> {
  if (!job.artifacts?.some((a) => a.name === "completion")) {
    throw new CliError(`job ${job.job_id} is done but has no result to show`);
  }
  const res = await fm.fetch("GET", `/jobs/${job.job_id}/artifacts/completion`);
  return parseObject(await res.text(), "the completion artifact");
}

/** The text a person wants from a final chat or generate response. */
function answer(result: Record<string, unknown>): string {
  const message = result.message as { content?: string; tool_calls?: unknown } | undefined;
  if (message) {
    if (message.content) return message.content;
    if (message.tool_calls) return JSON.stringify(message.tool_calls);
    return "";
  }
  return typeof result.response === "string" ? result.response : JSON.stringify(result);
}

function parseObject(text: string, what: string): Record<string, unknown> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    throw new UsageError(`${what} must be a JSON object`);
  }
  return parsed as Record<string, unknown>;
}
