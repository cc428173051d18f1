// Model names as Ollama reads them: the same model may be written with or without its default
// registry, namespace and tag, and foreman must see one model where Ollama does (the queue's
// drain-by-model, residency, the inventory's "has it" and list filters).

/** One model in the target's /api/tags or /api/ps list; foreman reads only its name. */
export interface ModelInfo {
  name: string;
  model?: string;
  [key: string]: unknown;
}

/**
 * The short name Ollama lists a model under: "llama3", "llama3:latest", "library/llama3" and
 * "registry.ollama.ai/library/llama3:latest" all name "llama3:latest", as in Ollama, where the
 * default registry, namespace and tag may be left out.
 */
export function normalizeModel(name: string): string {
  let short = name;
  const registry = /^registry\.ollama\.ai\//i.exec(short);
  if (registry) short = short.slice(registry[0].length);
  if (/^library\/[^/]+$/i.test(short)) short = short.slice("library/".length);
  const lastSegment = short.slice(short.lastIndexOf("/") + 1);
  return lastSegment.includes(":") ? short : `${short}:latest`;
}

export function sameModel(a: string, b: string): boolean {
  return normalizeModel(a) === normalizeModel(b);
}

/**
 * The namespace in a model's name, as Ollama's /v1/models reports it in `owned_by`: "library"
 * for the default namespace ("llama3", "library/llama3"), else the segment before the model
 * ("someone/llama3", "hf.co/someone/repo:q4" → "someone").
 */
export function namespaceOf(name: string): string {
  const parts = normalizeModel(name).split("/");
  return parts.length >= 2 ? parts.at(-2)! : "library";
}
