// The Ollama simulator's public face: tests and benchmarks import OllamaSim and its helpers from here.
// `deno run --allow-net sim/main.ts --port N` runs it as a process (see sim/main.ts).

export { OllamaSim, parseGoDuration, parseKeepAlive, simWords } from "./server.ts";
export type { SimCapability, SimEvent, SimOptions, SimRequest } from "./server.ts";
