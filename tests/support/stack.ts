// The stack most tests run against: the Ollama simulator with a real foreman process in front of
// it, started together and stopped together (foreman first, so it never sees its target vanish).
// `close()` serves a try/finally; `await using` stops both at the end of a block.

import { type ForemanProcess, startForeman } from "../../harness/foreman.ts";
import { OllamaSim } from "../../sim/mod.ts";

export type SimOptions = NonNullable<Parameters<typeof OllamaSim.start>[0]>;

export interface StackOptions {
  /** The simulator's settings, over quick loads and tokens (`loadMs: 10, tokenMs: 1`). */
  sim?: SimOptions;
  /** foreman's flags, after `--poll-interval 1s` (a flag given again wins). */
  args?: string[];
  /** Extra FOREMAN_* variables for foreman. */
  env?: Record<string, string>;
}

export interface Stack extends AsyncDisposable {
  sim: OllamaSim;
  fm: ForemanProcess;
  /** Stops foreman, then the simulator. */
  close(): Promise<void>;
}

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const sim = await OllamaSim.start({ loadMs: 10, tokenMs: 1, ...options.sim });
  let fm: ForemanProcess;
  try {
    fm = await startForeman({
      ollamaUrl: sim.url,
      args: ["--poll-interval", "1s", ...(options.args ?? [])],
      env: options.env,
    });
  } catch (err) {
    await sim.close();
    throw err;
  }
  const close = async () => {
    await fm.stop();
    await sim.close();
  };
  return { sim, fm, close, [Symbol.asyncDispose]: close };
}
