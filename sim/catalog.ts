// The models on the simulated Ollama's "disk": what /api/tags lists, /api/show describes and the
// management routes add or remove. Any spelling of a name finds its model (see names.ts).

import { fakeDigest, fullName, hash } from "./names.ts";

export interface ModelEntry {
  name: string;
  digest: string;
  size: number;
  /** Epoch milliseconds with sub-millisecond precision, shown with nanoseconds as Go does. */
  modifiedMs: number;
  family: string;
  parameterSize: string;
  capabilities: string[];
}

/** A model's entry: a copy of `like`'s kind, else the configured capabilities, else "embed" in the
 * name makes an embedding-only model. */
export function makeEntry(
  name: string,
  modifiedMs: number,
  like?: ModelEntry,
  capabilities?: string[],
): ModelEntry {
  const caps = like?.capabilities ?? capabilities;
  const embedOnly = caps ? !caps.includes("completion") : /embed/i.test(name);
  return {
    name,
    digest: fakeDigest(name),
    size: 1_000_000 + (hash(name) % 900_000),
    modifiedMs,
    family: like?.family ?? (embedOnly ? "nomic-bert" : "llama"),
    parameterSize: like?.parameterSize ?? (embedOnly ? "137M" : "1.2M"),
    capabilities: caps ?? (embedOnly ? ["embedding"] : ["completion", "tools", "thinking"]),
  };
}

/** The `details` object of /api/tags, /api/ps and /api/show. */
export function details(m: ModelEntry) {
  return {
    parent_model: "",
    format: "gguf",
    family: m.family,
    families: [m.family],
    parameter_size: m.parameterSize,
    quantization_level: "F32",
  };
}

export class Catalog {
  #byName = new Map<string, ModelEntry>();

  /** `capabilities`: lower-cased full name → the capabilities configured for that model. */
  constructor(readonly capabilities: Map<string, string[]>) {}

  /** The model `name` (any spelling) names, if it is on disk. */
  get(name: string): ModelEntry | undefined {
    return this.#byName.get(fullName(name).toLowerCase());
  }

  /** Puts a model on disk, replacing one of the same name: a copy of `like`, else with the
   * capabilities configured for it. */
  add(name: string, modifiedMs: number, like?: ModelEntry): ModelEntry {
    const e = makeEntry(name, modifiedMs, like, this.capabilities.get(name.toLowerCase()));
    this.#byName.set(e.name.toLowerCase(), e);
    return e;
  }

  delete(entry: ModelEntry): void {
    this.#byName.delete(entry.name.toLowerCase());
  }

  /** Newest first. Ollama sorts by whole seconds and breaks ties by map order (at random); the
   * exact time is one of its possible orders and keeps a just-created model first. */
  list(): ModelEntry[] {
    return [...this.#byName.values()].sort((a, b) => b.modifiedMs - a.modifiedMs);
  }
}
