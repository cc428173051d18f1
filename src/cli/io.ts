// The CLI's view of its terminal: stdout for results (so they can be piped), stderr for progress
// and errors, stdin for a piped request, and the clock. Commands take it as a parameter so they
// never reach for globals.

export interface Io {
  /** One line of output (the result a script would capture). */
  out(line: string): void;
  /** One line of progress or error text. */
  err(line: string): void;
  /** Everything piped on stdin, or undefined when stdin is a terminal. */
  readStdin(): Promise<string | undefined>;
  now(): number;
  sleep(ms: number): Promise<void>;
}

export const processIo: Io = {
  out: (line) => console.log(line),
  err: (line) => console.error(line),
  readStdin: async () => {
    if (Deno.stdin.isTerminal()) return undefined;
    return await new Response(Deno.stdin.readable).text();
  },
  now: () => Date.now(),
  sleep: (ms) => new Promise((resolve) => setTimeout(resolve, ms)),
};
