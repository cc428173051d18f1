// Responses made of the target's answers: its status, its headers minus the hop-by-hop ones (plus
// the job's ID when a job ran it) and its body as relayed. The worker hands a sync job's answer
// over raw (worker/types.ts's Answer); how a caller sees it is decided here, in the HTTP layer.

/** Names the job that produced a response, on answers and errors of sync jobs alike. */
export const JOB_ID_HEADER = "x-foreman-job-id";

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
  "content-length",
  "content-encoding",
]);

/** The target's response headers minus hop-by-hop ones, plus X-Foreman-Job-Id. */
export function relayHeaders(source: Headers, jobId?: string): Headers {
  const out = new Headers();
  for (const [k, v] of source) if (!HOP_BY_HOP.has(k)) out.set(k, v);
  if (jobId) out.set(JOB_ID_HEADER, jobId);
  return out;
}

/** A target answer whose body is already relayed (or a worker's Answer) as the caller's response. */
export function relayedResponse(
  answer: {
    status: number;
    headers: Headers;
    body: ReadableStream<Uint8Array> | Uint8Array<ArrayBuffer> | null;
  },
  jobId?: string,
): Response {
  return new Response(answer.body, {
    status: answer.status,
    headers: relayHeaders(answer.headers, jobId),
  });
}
