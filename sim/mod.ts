// The Ollama simulator's public face: tests and benchmarks import OllamaSim and its helpers from here.
// `deno run --allow-net sim/main.ts --port N` runs it as a process (see sim/main.ts).

export { OllamaSim, type SimRequest } from "./server.ts";
export type { SimCapability, SimOptions } from "./config.ts";
export type { SimEvent } from "./core.ts";
export { simWords } from "./answer.ts";
export { parseGoDuration, parseKeepAlive } from "./bind.ts";
