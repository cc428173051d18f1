// Clocks and waits as the simulator needs them: epoch milliseconds with sub-millisecond precision,
// Go's time.Time in JSON, nanosecond metrics, and sleeps that end early when a request goes away.

/** Go's time.Duration(math.MaxInt64), which Ollama uses for "keep forever", in milliseconds. */
export const FOREVER_SHOWN_MS = 9223372036854.775;

/** Epoch milliseconds; the clock's sub-millisecond digits stand in for Go's nanoseconds. */
export const now = (): number => performance.timeOrigin + performance.now();

/** A duration in milliseconds as Ollama's metrics give it: whole nanoseconds, at least 1. */
export const ns = (ms: number): number => Math.max(1, Math.round(ms * 1e6));

/** Go's time.Time in JSON (RFC 3339 with up to nine fractional digits, trailing zeros dropped) for
 * epoch milliseconds. */
export function goTime(ms: number): string {
  const sec = Math.floor(ms / 1000);
  const nanos = Math.min(999_999_999, Math.floor((ms - sec * 1000) * 1e6));
  const frac = nanos ? "." + String(nanos).padStart(9, "0").replace(/0+$/, "") : "";
  return `${new Date(sec * 1000).toISOString().slice(0, 19)}${frac}Z`;
}

/** Go's time.Time.Unix() of a goTime string: whole seconds, as OpenAI's `created` fields give. */
export function unixSeconds(time: unknown): number {
  const ms = typeof time === "string" ? Date.parse(time) : NaN;
  return Math.floor((Number.isNaN(ms) ? now() : ms) / 1000);
}

/** Resolves true after `ms`, or false as soon as `signal` aborts; leaves no timer behind. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const done = (elapsed: boolean) => {
      clearTimeout(timer);
      signal.removeEventListener("abort", onAbort);
      resolve(elapsed);
    };
    const onAbort = () => done(false);
    const timer = setTimeout(() => done(true), ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves once `signal` aborts. */
export function aborted(signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
  return new Promise((resolve) =>
    signal.addEventListener("abort", () => resolve(), { once: true })
  );
}
