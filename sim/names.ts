// Model names as Ollama reads them (model.ParseName): `tiny-a`, `tiny-a:latest`, `library/tiny-a`
// and `registry.ollama.ai/library/tiny-a:latest` are one model. Also the stable fake digests the
// simulated models carry.

function fnv1a(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** A stable 32-bit hash of `text`, for sizes, vectors and contexts that must not change. */
export const hash = (text: string): number => fnv1a(text);

/** A stable 64-hex-digit stand-in for a sha256 digest. */
export function fakeDigest(text: string): string {
  let out = "";
  for (let i = 0; i < 8; i++) out += fnv1a(text, fnv1a(`${i}`)).toString(16).padStart(8, "0");
  return out;
}

/** Ollama's short display name: registry and library prefixes dropped, ":latest" added. */
export function fullName(name: string): string {
  const n = name.trim().replace(/^registry\.ollama\.ai\//i, "").replace(/^library\//i, "");
  return n.lastIndexOf(":") > n.lastIndexOf("/") ? n : `${n}:latest`;
}

/** Ollama's model.Name.String(): the name with registry and namespace, as capability errors say. */
export function longName(name: string): string {
  const parts = fullName(name).split("/");
  if (parts.length === 1) return `registry.ollama.ai/library/${parts[0]}`;
  return parts.length === 2 ? `registry.ollama.ai/${parts.join("/")}` : parts.join("/");
}

/** Where Ollama's pull and push reach the registry for a model. */
export function registryOf(name: string): { host: string; repo: string; tag: string } {
  const full = fullName(name);
  const colon = full.lastIndexOf(":");
  const parts = full.slice(0, colon).split("/");
  const host = parts.length === 3 ? parts.shift()! : "registry.ollama.ai";
  if (parts.length === 1) parts.unshift("library");
  return { host, repo: `https://${host}/v2/${parts.join("/")}`, tag: full.slice(colon + 1) };
}

/** model.ParseName(name).Namespace, which OpenAI's `owned_by` shows: "library" unless named. */
export function namespaceOf(name: string): string {
  const parts = fullName(name).split("/");
  return parts.at(-2) ?? "library";
}
