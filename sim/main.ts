// The simulator as a process: prints one JSON line, {"listening": url}, once listening, then serves
// until SIGTERM or SIGINT. Benchmarks and the Go client's tests run it this way:
// `deno run --allow-net sim/main.ts --port 0 --models a,b --load-ms 5`.

import type { SimOptions } from "./config.ts";
import { OllamaSim } from "./server.ts";

/** Reads the command line into simulator options; throws a TypeError naming a bad flag. */
export function parseCli(args: string[]): SimOptions {
  const opts: SimOptions = { port: 11434 };
  const numbers: Record<string, keyof SimOptions> = {
    "--port": "port",
    "--load-ms": "loadMs",
    "--token-ms": "tokenMs",
    "--tokens": "tokens",
    "--max-loaded": "maxLoaded",
    "--dimensions": "dimensions",
    "--max-queue": "maxQueue",
  };
  for (let i = 0; i < args.length; i++) {
    let [flag = "", value] = (args[i] ?? "").split(/=(.*)/s, 2);
    if (value === undefined) value = args[++i];
    if (value === undefined) throw new TypeError(`Missing a value after ${flag}`);
    const field = numbers[flag];
    if (field !== undefined) {
      const n = Number(value);
      if (!Number.isFinite(n)) {
        throw new TypeError(`Cannot read ${flag}: '${value}' is not a number`);
      }
      (opts as Record<string, unknown>)[field] = n;
    } else if (flag === "--models") {
      opts.models = value.split(",").map((s) => s.trim()).filter(Boolean);
    } else if (flag === "--keep-alive") {
      opts.defaultKeepAlive = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : value;
    } else if (flag === "--hostname") {
      opts.hostname = value;
    } else if (flag === "--version") {
      opts.version = value;
    } else {
      throw new TypeError(`Unknown flag ${flag}`);
    }
  }
  return opts;
}

if (import.meta.main) {
  let opts: SimOptions;
  try {
    opts = parseCli(Deno.args);
  } catch (e) {
    console.error(`ollama_sim: ${(e as Error).message}`);
    console.error(
      "usage: sim/main.ts [--port 11434] [--hostname 127.0.0.1] [--models a,b,c] [--load-ms N]\n" +
        "  [--token-ms N] [--tokens N] [--max-loaded N] [--keep-alive 5m] [--version 0.11.4]\n" +
        "  [--dimensions N] [--max-queue N]",
    );
    Deno.exit(2);
  }
  const sim = await OllamaSim.start(opts);
  console.log(JSON.stringify({ listening: sim.url }));
  const quit = async () => {
    await sim.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", quit);
  Deno.addSignalListener("SIGINT", quit);
}
