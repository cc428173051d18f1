// How far the job the worker runs has got, for watchers (ADR-0017): since when it works and how
// many records the target has streamed so far, counted from the relayed chunks without parsing
// them. Never stored, never sent to a webhook, and never the text itself (ADR-0012).

/** The working job's progress. `records` is null when the target's answer does not stream. */
export interface Progress {
  jobId: string;
  /** When the job entered `working` (epoch ms). */
  since: number;
  records: number | null;
}

/** Counts the records a chunk of a streamed answer completes; may carry state across chunks. */
export type RecordCounter = (chunk: Uint8Array) => number;

const NL = 10;
const CR = 13;

/**
 * The counter for an answer of this content type: a line per record for Ollama's NDJSON (one
 * generated token per line), an event per record for Server-Sent Events (the OpenAI-compatible
 * stream); undefined for a whole answer, which has nothing to count until it ends.
 */
export function recordCounter(contentType: string | null): RecordCounter | undefined {
  const type = contentType?.split(";", 1)[0]?.trim().toLowerCase();
  if (type === "application/x-ndjson") return countLines;
  if (type === "text/event-stream") return eventCounter();
  return undefined;
}

/** Line ends in the chunk: one native byte search per line, nothing kept between chunks. */
export function countLines(chunk: Uint8Array): number {
  let n = 0;
  for (let i = chunk.indexOf(NL); i !== -1; i = chunk.indexOf(NL, i + 1)) n++;
  return n;
}

/** Blank lines (LF LF or CRLF CRLF), which end Server-Sent Events, across chunk boundaries. */
export function eventCounter(): RecordCounter {
  // The two bytes before the chunk, as a blank line can start in one chunk and end in the next.
  let before2 = 0;
  let before1 = 0;
  return (chunk) => {
    const at = (i: number) => i >= 0 ? chunk[i]! : i === -1 ? before1 : before2;
    let n = 0;
    for (let i = chunk.indexOf(NL); i !== -1; i = chunk.indexOf(NL, i + 1)) {
      let j = i - 1;
      if (at(j) === CR) j--;
      if (at(j) === NL) n++;
    }
    if (chunk.byteLength >= 2) {
      before2 = chunk[chunk.byteLength - 2]!;
      before1 = chunk[chunk.byteLength - 1]!;
    } else if (chunk.byteLength === 1) {
      before2 = before1;
      before1 = chunk[0]!;
    }
    return n;
  };
}
