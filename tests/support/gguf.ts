// Writes tiny llama-architecture GGUF v3 models with seeded random F32 weights, so the real-Ollama
// test tier has models to load without a network. They answer with deterministic gibberish; that is
// all the tier needs: real loads, real swaps, real NDJSON, real metrics.

/** GGUF metadata value types, as numbered by the format. */
const GGUF_U32 = 4;
const GGUF_I32 = 5;
const GGUF_F32 = 6;
const GGUF_STRING = 8;
const GGUF_ARRAY = 9;

/** ggml tensor type for plain 32-bit floats. */
const GGML_TYPE_F32 = 0;

/** Alignment of the tensor data section and of every tensor in it (GGUF's default). */
export const GGUF_ALIGNMENT = 32;

/** llama.cpp token types: only these three occur in the tiny vocabularies. */
const TOKEN_NORMAL = 1;
const TOKEN_UNKNOWN = 2;
const TOKEN_CONTROL = 3;
const TOKEN_BYTE = 6;

/** Words that become whole tokens (SentencePiece marks a leading space with "▁"). */
const DEFAULT_WORDS = [
  "▁the",
  "▁a",
  "▁job",
  "▁queue",
  "▁model",
  "▁worker",
  "▁done",
  "▁hello",
  "▁world",
  "▁foreman",
  "▁ollama",
  "▁tiny",
  "▁yes",
  "▁no",
  "▁ok",
  "ing",
  "ed",
  "er",
  "▁is",
  "▁and",
];

/** Options of {@linkcode writeTinyLlama}. */
export interface TinyLlamaOptions {
  /** PRNG seed; the same options always give the same bytes. */
  seed: number;
  /** Embedding width; must be a multiple of `heads` with an even head size. */
  embd: number;
  /** Number of transformer blocks. */
  layers: number;
  /** Attention heads (key/value heads are the same: no grouped-query attention). */
  heads: number;
  /** Feed-forward width. */
  ff: number;
  /** Context length recorded in the model; Ollama clamps num_ctx to it. */
  ctx: number;
  /** Whole-word tokens after the control and byte tokens. Default: a small built-in list. */
  vocab?: string[];
  /** Write a separate `output.weight`; without it llama.cpp ties the output to the embeddings. */
  output?: boolean;
  /** Model name stored as `general.name`. */
  name?: string;
}

/** The models the e2e tier imports: three workers of different shapes and one embedder. */
export const TINY_MODELS: Record<string, TinyLlamaOptions> = {
  "tiny-a": { seed: 1, embd: 64, layers: 2, heads: 4, ff: 128, ctx: 512, output: true },
  "tiny-b": { seed: 2, embd: 96, layers: 2, heads: 4, ff: 192, ctx: 512, output: true },
  "tiny-c": { seed: 3, embd: 64, layers: 3, heads: 4, ff: 160, ctx: 512, output: true },
  "tiny-embed": { seed: 4, embd: 64, layers: 1, heads: 4, ff: 128, ctx: 512, output: false },
};

/** Returns the GGUF bytes of one of {@linkcode TINY_MODELS} by name. */
export function tinyModel(name: string): Uint8Array<ArrayBuffer> {
  const opts = TINY_MODELS[name];
  if (!opts) throw new RangeError(`Cannot build tiny model '${name}': no such model`);
  return writeTinyLlama({ ...opts, name });
}

/**
 * Returns a complete GGUF v3 file for a llama-architecture model with random weights.
 *
 * The vocabulary is SentencePiece-shaped (`<unk>`, `<s>`, `</s>`, the 256 byte tokens, then
 * words) so that llama.cpp tokenises any text by byte fallback. Output rows of control and
 * non-printable byte tokens are zero, so greedy decoding never picks them: answers are printable
 * text and never end early on `</s>`.
 */
export function writeTinyLlama(opts: TinyLlamaOptions): Uint8Array<ArrayBuffer> {
  const { seed, embd, layers, heads, ff, ctx } = opts;
  if (embd % heads !== 0 || (embd / heads) % 2 !== 0) {
    throw new RangeError(
      `Cannot build a tiny llama with embd ${embd} and heads ${heads}: head size must be even`,
    );
  }
  const tokens = vocabulary(opts.vocab ?? DEFAULT_WORDS);
  const nVocab = tokens.length;
  const random = mulberry32(seed);

  const kv: Array<[string, Value]> = [
    ["general.architecture", str("llama")],
    ["general.name", str(opts.name ?? `tiny-${seed}`)],
    ["general.file_type", u32(0)], // all F32
    ["general.alignment", u32(GGUF_ALIGNMENT)],
    ["llama.context_length", u32(ctx)],
    ["llama.embedding_length", u32(embd)],
    ["llama.block_count", u32(layers)],
    ["llama.feed_forward_length", u32(ff)],
    ["llama.rope.dimension_count", u32(embd / heads)],
    ["llama.attention.head_count", u32(heads)],
    ["llama.attention.head_count_kv", u32(heads)],
    ["llama.attention.layer_norm_rms_epsilon", f32(1e-5)],
    ["llama.rope.freq_base", f32(10000)],
    ["llama.vocab_size", u32(nVocab)],
    ["tokenizer.ggml.model", str("llama")],
    ["tokenizer.ggml.tokens", strArray(tokens.map((t) => t.text))],
    ["tokenizer.ggml.scores", f32Array(tokens.map((t) => t.score))],
    ["tokenizer.ggml.token_type", i32Array(tokens.map((t) => t.type))],
    ["tokenizer.ggml.bos_token_id", u32(1)],
    ["tokenizer.ggml.eos_token_id", u32(2)],
    ["tokenizer.ggml.unknown_token_id", u32(0)],
  ];

  // Scale like a real initialisation (1/sqrt(fan_in)) so activations stay in range.
  const matrix = (rows: number, cols: number) =>
    randomF32(rows * cols, random, 1 / Math.sqrt(rows));
  const ones = (n: number) => new Float32Array(n).fill(1);
  const tensors: Tensor[] = [
    { name: "token_embd.weight", dims: [embd, nVocab], data: matrix(embd, nVocab) },
    { name: "output_norm.weight", dims: [embd], data: ones(embd) },
  ];
  if (opts.output) {
    const out = randomF32(embd * nVocab, random, 4 / Math.sqrt(embd));
    tokens.forEach((t, id) => {
      if (!t.emit) out.fill(0, id * embd, (id + 1) * embd);
    });
    tensors.push({ name: "output.weight", dims: [embd, nVocab], data: out });
  }
  for (let n = 0; n < layers; n++) {
    const p = `blk.${n}.`;
    tensors.push(
      { name: `${p}attn_norm.weight`, dims: [embd], data: ones(embd) },
      { name: `${p}attn_q.weight`, dims: [embd, embd], data: matrix(embd, embd) },
      { name: `${p}attn_k.weight`, dims: [embd, embd], data: matrix(embd, embd) },
      { name: `${p}attn_v.weight`, dims: [embd, embd], data: matrix(embd, embd) },
      { name: `${p}attn_output.weight`, dims: [embd, embd], data: matrix(embd, embd) },
      { name: `${p}ffn_norm.weight`, dims: [embd], data: ones(embd) },
      { name: `${p}ffn_gate.weight`, dims: [embd, ff], data: matrix(embd, ff) },
      { name: `${p}ffn_up.weight`, dims: [embd, ff], data: matrix(embd, ff) },
      { name: `${p}ffn_down.weight`, dims: [ff, embd], data: matrix(ff, embd) },
    );
  }
  return encode(kv, tensors);
}

interface Token {
  text: string;
  score: number;
  type: number;
  /** Whether greedy decoding may produce it (printable ASCII bytes and words). */
  emit: boolean;
}

function vocabulary(words: string[]): Token[] {
  const tokens: Token[] = [
    { text: "<unk>", score: 0, type: TOKEN_UNKNOWN, emit: false },
    { text: "<s>", score: 0, type: TOKEN_CONTROL, emit: false },
    { text: "</s>", score: 0, type: TOKEN_CONTROL, emit: false },
  ];
  for (let b = 0; b < 256; b++) {
    const text = `<0x${b.toString(16).toUpperCase().padStart(2, "0")}>`;
    tokens.push({ text, score: 0, type: TOKEN_BYTE, emit: b >= 0x20 && b < 0x7f });
  }
  // SentencePiece merges by score: longer words win over their pieces.
  words.forEach((text) =>
    tokens.push({ text, score: -1 / text.length, type: TOKEN_NORMAL, emit: true })
  );
  return tokens;
}

/** A small, fast, seedable PRNG (mulberry32); weights only need to be repeatable, not good. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function randomF32(n: number, random: () => number, scale: number): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

type Value =
  | { type: typeof GGUF_U32 | typeof GGUF_I32 | typeof GGUF_F32; value: number }
  | { type: typeof GGUF_STRING; value: string }
  | { type: typeof GGUF_ARRAY; element: number; items: Array<number | string> };

const u32 = (value: number): Value => ({ type: GGUF_U32, value });
const f32 = (value: number): Value => ({ type: GGUF_F32, value });
const str = (value: string): Value => ({ type: GGUF_STRING, value });
const strArray = (items: string[]): Value => ({ type: GGUF_ARRAY, element: GGUF_STRING, items });
const f32Array = (items: number[]): Value => ({ type: GGUF_ARRAY, element: GGUF_F32, items });
const i32Array = (items: number[]): Value => ({ type: GGUF_ARRAY, element: GGUF_I32, items });

interface Tensor {
  name: string;
  /** Dimensions, fastest-varying first (ggml's ne[0], ne[1], ...). */
  dims: number[];
  data: Float32Array;
}

/** Grows a little-endian byte buffer; the files are small enough to build in memory. */
class Writer {
  #buf = new Uint8Array(1 << 16);
  #view = new DataView(this.#buf.buffer);
  length = 0;

  #reserve(n: number): number {
    if (this.length + n > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < this.length + n) size *= 2;
      const next = new Uint8Array(size);
      next.set(this.#buf.subarray(0, this.length));
      this.#buf = next;
      this.#view = new DataView(next.buffer);
    }
    const at = this.length;
    this.length += n;
    return at;
  }

  u32(v: number) {
    this.#view.setUint32(this.#reserve(4), v, true);
  }
  i32(v: number) {
    this.#view.setInt32(this.#reserve(4), v, true);
  }
  u64(v: number) {
    this.#view.setBigUint64(this.#reserve(8), BigInt(v), true);
  }
  f32(v: number) {
    this.#view.setFloat32(this.#reserve(4), v, true);
  }
  bytes(b: Uint8Array) {
    const at = this.#reserve(b.length); // may replace #buf, so reserve before reading it
    this.#buf.set(b, at);
  }
  string(s: string) {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  pad(alignment: number) {
    const rest = this.length % alignment;
    if (rest !== 0) this.#reserve(alignment - rest); // new bytes are already zero
  }
  result(): Uint8Array<ArrayBuffer> {
    return this.#buf.slice(0, this.length);
  }
}

function encode(kv: Array<[string, Value]>, tensors: Tensor[]): Uint8Array<ArrayBuffer> {
  const w = new Writer();
  w.bytes(new TextEncoder().encode("GGUF"));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kv.length);
  for (const [key, value] of kv) {
    w.string(key);
    w.u32(value.type);
    if (value.type === GGUF_ARRAY) {
      w.u32(value.element);
      w.u64(value.items.length);
      for (const item of value.items) scalar(w, value.element, item);
    } else {
      scalar(w, value.type, value.value);
    }
  }
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.dims.length);
    for (const d of t.dims) w.u64(d);
    w.u32(GGML_TYPE_F32);
    w.u64(offset);
    offset = alignUp(offset + t.data.byteLength, GGUF_ALIGNMENT);
  }
  w.pad(GGUF_ALIGNMENT);
  for (const t of tensors) {
    w.bytes(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
    w.pad(GGUF_ALIGNMENT);
  }
  return w.result();
}

function scalar(w: Writer, type: number, value: number | string) {
  if (type === GGUF_STRING) w.string(value as string);
  else if (type === GGUF_U32) w.u32(value as number);
  else if (type === GGUF_I32) w.i32(value as number);
  else if (type === GGUF_F32) w.f32(value as number);
  else throw new TypeError(`Cannot write GGUF value of type ${type}`);
}

function alignUp(n: number, alignment: number): number {
  return Math.ceil(n / alignment) * alignment;
}
