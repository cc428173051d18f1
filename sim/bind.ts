// Request binding as Ollama's Go server does it (gin's ShouldBindJSON into a request struct), with
// Go's own error texts: JSON syntax, a value of the wrong type, keep_alive durations, think values,
// mistyped options and formats.

/** A JSON value's kind as Go's encoding/json names it in "cannot unmarshal X" errors. */
export type Kind = "string" | "bool" | "number" | "integer" | "object" | "array" | "any";

/** A field of a Go struct: the kind it accepts, its Go type, and for a struct (or a slice of
 * structs) the struct's own fields, which are checked in turn. */
export type Field = [kind: Kind, goType: string, inner?: Struct];
export type Shape = Record<string, Field>;
export interface Struct {
  /** Go's name of the struct, as errors about its fields give it ("Message"). */
  name: string;
  /** Its type as a field of another struct names it ("openai.Message"). */
  goType: string;
  shape: Shape;
}

export const CHAT: Shape = {
  model: ["string", "string"],
  messages: ["array", "[]api.Message"],
  tools: ["array", "api.Tools"],
  stream: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
  format: ["any", ""],
  think: ["any", ""],
  keep_alive: ["any", ""],
};
export const GENERATE: Shape = {
  model: ["string", "string"],
  prompt: ["string", "string"],
  suffix: ["string", "string"],
  system: ["string", "string"],
  template: ["string", "string"],
  context: ["array", "[]int"],
  images: ["array", "[]api.ImageData"],
  stream: ["bool", "bool"],
  raw: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
  format: ["any", ""],
  think: ["any", ""],
  keep_alive: ["any", ""],
};
export const EMBED: Shape = {
  model: ["string", "string"],
  input: ["any", ""],
  truncate: ["bool", "bool"],
  dimensions: ["number", "int"],
  options: ["object", "map[string]interface {}"],
  keep_alive: ["any", ""],
};
export const EMBEDDINGS: Shape = {
  model: ["string", "string"],
  prompt: ["string", "string"],
  options: ["object", "map[string]interface {}"],
  keep_alive: ["any", ""],
};
export const SHOW: Shape = {
  model: ["string", "string"],
  name: ["string", "string"],
  system: ["string", "string"],
  verbose: ["bool", "bool"],
  options: ["object", "map[string]interface {}"],
};
export const NAMED: Shape = {
  model: ["string", "string"],
  name: ["string", "string"],
  stream: ["bool", "bool"],
};
export const COPY: Shape = {
  source: ["string", "string"],
  destination: ["string", "string"],
};

export function jsonKind(v: unknown): string {
  if (Array.isArray(v)) return "array";
  if (typeof v === "boolean") return "bool";
  return typeof v;
}

/** Go's %T of a decoded JSON value (interface{}), as Ollama's messages print it. */
export function goTypeName(v: unknown): string {
  if (v === null || v === undefined) return "<nil>";
  if (Array.isArray(v)) return "[]interface {}";
  if (typeof v === "boolean") return "bool";
  if (typeof v === "number") return "float64";
  if (typeof v === "object") return "map[string]interface {}";
  return typeof v;
}

// ---------------------------------------------------------------------------------------------
// Durations, as Go's time.ParseDuration and Ollama's api.Duration read them

const GO_UNITS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "\u00b5s": 1e-3,
  "\u03bcs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go's time.ParseDuration, in milliseconds; throws with Go's own error text. */
export function parseGoDuration(text: string): number {
  const quoted = `"${text}"`;
  let s = text;
  let negative = false;
  if (s.startsWith("-") || s.startsWith("+")) {
    negative = s[0] === "-";
    s = s.slice(1);
  }
  if (s === "0") return 0;
  if (s === "") throw new Error(`time: invalid duration ${quoted}`);
  let total = 0;
  while (s !== "") {
    const m = /^(\d*)(?:\.(\d*))?/.exec(s)!;
    const [whole = "", int, frac] = m;
    if (int === "" && (frac === undefined || frac === "")) {
      throw new Error(`time: invalid duration ${quoted}`);
    }
    s = s.slice(whole.length);
    const unit = /^[^\d.]*/.exec(s)![0];
    if (unit === "") throw new Error(`time: missing unit in duration ${quoted}`);
    const size = GO_UNITS[unit];
    if (size === undefined) throw new Error(`time: unknown unit "${unit}" in duration ${quoted}`);
    s = s.slice(unit.length);
    total += Number(`${int || "0"}.${frac || "0"}`) * size;
  }
  return negative ? -total : total;
}

/**
 * Ollama's keep_alive: a number of seconds (truncated; negative = forever) or a Go duration string
 * (negative = forever). Returns milliseconds, Infinity for forever; throws Ollama's 400 message.
 */
export function parseKeepAlive(value: unknown): number {
  if (typeof value === "number") return value < 0 ? Infinity : Math.trunc(value) * 1000;
  if (typeof value === "string") {
    const ms = parseGoDuration(value);
    return ms < 0 ? Infinity : ms;
  }
  throw new Error(`Unsupported type: '${goTypeName(value)}'`);
}

// ---------------------------------------------------------------------------------------------
// Decoding

export type Decoded = { value: Record<string, unknown> } | { error: string };

/** encoding/json's Decoder into a struct of type `goType` ("api.ChatRequest"): syntax errors, a
 * body that is not an object, and the first field (in the body's order) of the wrong type. An
 * empty body is Go's io.EOF, "EOF"; null decodes to an empty struct. */
export function decode(text: string, goType: string, shape: Shape): Decoded {
  if (text.trim() === "") return { error: "EOF" };
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    const msg = String((e as Error).message);
    if (/end of JSON input|Unterminated/i.test(msg)) return { error: "unexpected EOF" };
    const at = /position (\d+)/.exec(msg);
    const ch = at ? text[Number(at[1])] : text.trim()[0];
    return { error: `invalid character '${ch}' looking for beginning of value` };
  }
  if (value === null) value = {};
  if (typeof value !== "object" || Array.isArray(value)) {
    return { error: `json: cannot unmarshal ${jsonKind(value)} into Go value of type ${goType}` };
  }
  const obj = value as Record<string, unknown>;
  const error = typeError(obj, goType.replace(/^\w+\./, ""), shape, []);
  return error ? { error } : { value: obj };
}

/** The first field of `obj` whose value does not fit, in Go's words. Go names the innermost struct
 * and the field's whole path ("Message.messages.role"). */
function typeError(
  obj: Record<string, unknown>,
  struct: string,
  shape: Shape,
  path: string[],
): string | undefined {
  for (const [key, v] of Object.entries(obj)) {
    const field = Object.hasOwn(shape, key) ? shape[key] : undefined;
    if (!field || v === null || field[0] === "any") continue;
    const [kind, goType, inner] = field;
    const at = [...path, key];
    const wrong = misfit(kind, v);
    const where = `Go struct field ${struct}.${at.join(".")}`;
    if (wrong) return `json: cannot unmarshal ${wrong} into ${where} of type ${goType}`;
    if (!inner) continue;
    for (const item of kind === "array" ? v as unknown[] : [v]) {
      if (item === null) continue;
      if (jsonKind(item) !== "object") {
        return `json: cannot unmarshal ${jsonKind(item)} into ${where} of type ${inner.goType}`;
      }
      const error = typeError(item as Record<string, unknown>, inner.name, inner.shape, at);
      if (error) return error;
    }
  }
  return undefined;
}

/** What Go's "cannot unmarshal X" says of a value that does not fit `kind`, or undefined. */
function misfit(kind: Kind, v: unknown): string | undefined {
  const actual = jsonKind(v);
  if (kind === "integer") {
    if (actual !== "number") return actual;
    return Number.isInteger(v) ? undefined : `number ${v}`;
  }
  return actual === kind ? undefined : actual;
}

export type Bound = { value: Record<string, unknown>; keepAliveMs: number | undefined } | {
  error: string;
};

/** gin's ShouldBindJSON into an Ollama request struct as a native handler does it: an empty body
 * is "missing request body", and think and keep_alive are read as Ollama's types read them. */
export function bind(text: string, goType: string, shape: Shape): Bound {
  if (text.trim() === "") return { error: "missing request body" };
  const decoded = decode(text, goType, shape);
  if ("error" in decoded) return decoded;
  const obj = decoded.value;
  const think = obj.think;
  if (
    "think" in shape && think !== undefined && think !== null && typeof think !== "boolean" &&
    !(typeof think === "string" && ["high", "medium", "low"].includes(think))
  ) {
    return {
      error: typeof think === "string"
        ? `invalid think value: "${think}" (must be "high", "medium", "low", true, or false)`
        : `think must be a boolean or string ("high", "medium", "low", true, or false)`,
    };
  }
  let keepAliveMs: number | undefined;
  if ("keep_alive" in shape && obj.keep_alive !== undefined && obj.keep_alive !== null) {
    try {
      keepAliveMs = parseKeepAlive(obj.keep_alive);
    } catch (e) {
      return { error: (e as Error).message };
    }
  }
  return { value: obj, keepAliveMs };
}

// ---------------------------------------------------------------------------------------------
// Checks Ollama makes after binding: options (api.Options.FromMap) and format (the runner)

/** The Go kind of each field of api.Options that FromMap checks; other keys are ignored. */
const OPTION_KINDS: Record<string, "integer" | "float32" | "boolean" | "array"> = {
  num_ctx: "integer",
  num_batch: "integer",
  num_gpu: "integer",
  main_gpu: "integer",
  use_mmap: "boolean",
  num_thread: "integer",
  num_keep: "integer",
  seed: "integer",
  num_predict: "integer",
  top_k: "integer",
  top_p: "float32",
  min_p: "float32",
  typical_p: "float32",
  repeat_last_n: "integer",
  temperature: "float32",
  repeat_penalty: "float32",
  presence_penalty: "float32",
  frequency_penalty: "float32",
  stop: "array",
};

/** api.Options.FromMap's complaint about the first mistyped option, which Ollama answers with a
 * 500 before loading anything (Go walks the map in random order, so with several it names any). */
export function optionsError(options: Record<string, unknown> | undefined): string | undefined {
  for (const [key, v] of Object.entries(options ?? {})) {
    const kind = OPTION_KINDS[key];
    if (kind === undefined || v === null) continue;
    const ok = kind === "boolean"
      ? typeof v === "boolean"
      : kind === "array"
      ? Array.isArray(v)
      : typeof v === "number";
    if (!ok) return `option "${key}" must be of type ${kind}`;
    if (kind === "array" && (v as unknown[]).some((x) => typeof x !== "string")) {
      return `option "${key}" must be of an array of strings`;
    }
  }
  return undefined;
}

/** The runner's check of `format`, made once the model is loaded: null, "", "json" or an object. */
export function formatError(format: unknown): string | undefined {
  if (format === undefined || format === null || format === "" || format === "json") return;
  if (typeof format === "object" && !Array.isArray(format)) return;
  // Go quotes the raw JSON with %q; JSON.stringify quotes the same way for printable text.
  const quoted = JSON.stringify(JSON.stringify(format));
  return `invalid format: ${quoted}; expected "json" or a valid JSON Schema object`;
}
