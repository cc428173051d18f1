// Reads the tiny GGUF models back with an independent parser: header, metadata, tensor infos,
// alignment and sizes. Runs without Ollama; the e2e tier proves Ollama loads the same bytes.

import assert from "node:assert/strict";
import { GGUF_ALIGNMENT, TINY_MODELS, tinyModel, writeTinyLlama } from "./support/gguf.ts";

interface ParsedTensor {
  name: string;
  dims: number[];
  type: number;
  offset: number;
}

interface ParsedGguf {
  version: number;
  kv: Map<string, unknown>;
  tensors: ParsedTensor[];
  dataStart: number;
}

function parseGguf(bytes: Uint8Array): ParsedGguf {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 0;
  const u32 = () => (at += 4, view.getUint32(at - 4, true));
  const u64 = () => (at += 8, Number(view.getBigUint64(at - 8, true)));
  const string = () => {
    const n = u64();
    at += n;
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(at - n, at));
  };
  const value = (type: number): unknown => {
    switch (type) {
      case 4:
        return u32();
      case 5:
        return (at += 4, view.getInt32(at - 4, true));
      case 6:
        return (at += 4, view.getFloat32(at - 4, true));
      case 8:
        return string();
      case 10:
        return u64();
      case 9: {
        const element = u32();
        const n = u64();
        return Array.from({ length: n }, () => value(element));
      }
      default:
        throw new Error(`unexpected GGUF type ${type} at byte ${at}`);
    }
  };

  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), "GGUF");
  at = 4;
  const version = u32();
  const nTensors = u64();
  const nKv = u64();
  const kv = new Map<string, unknown>();
  for (let i = 0; i < nKv; i++) {
    const key = string();
    kv.set(key, value(u32()));
  }
  const tensors: ParsedTensor[] = [];
  for (let i = 0; i < nTensors; i++) {
    const name = string();
    const nDims = u32();
    const dims = Array.from({ length: nDims }, () => u64());
    tensors.push({ name, dims, type: u32(), offset: u64() });
  }
  const dataStart = Math.ceil(at / GGUF_ALIGNMENT) * GGUF_ALIGNMENT;
  return { version, kv, tensors, dataStart };
}

Deno.test("a tiny llama parses back as GGUF v3 with llama metadata", () => {
  const g = parseGguf(tinyModel("tiny-a"));
  assert.equal(g.version, 3);
  assert.equal(g.kv.get("general.architecture"), "llama");
  assert.equal(g.kv.get("llama.embedding_length"), 64);
  assert.equal(g.kv.get("llama.block_count"), 2);
  assert.equal(g.kv.get("llama.feed_forward_length"), 128);
  assert.equal(g.kv.get("llama.attention.head_count"), 4);
  assert.equal(g.kv.get("llama.context_length"), 512);
  assert.ok(Math.abs((g.kv.get("llama.attention.layer_norm_rms_epsilon") as number) - 1e-5) < 1e-9);
  assert.equal(g.kv.get("tokenizer.ggml.model"), "llama");
});

Deno.test("the vocabulary holds the 256 byte tokens typed 6 after unk, bos and eos", () => {
  const g = parseGguf(tinyModel("tiny-b"));
  const tokens = g.kv.get("tokenizer.ggml.tokens") as string[];
  const types = g.kv.get("tokenizer.ggml.token_type") as number[];
  const scores = g.kv.get("tokenizer.ggml.scores") as number[];
  assert.deepEqual(tokens.slice(0, 3), ["<unk>", "<s>", "</s>"]);
  assert.equal(tokens[3], "<0x00>");
  assert.equal(tokens[3 + 0x0a], "<0x0A>");
  assert.equal(tokens[3 + 255], "<0xFF>");
  for (let b = 0; b < 256; b++) assert.equal(types[3 + b], 6);
  assert.ok(tokens.length > 259, "some whole-word tokens follow the bytes");
  assert.equal(types.length, tokens.length);
  assert.equal(scores.length, tokens.length);
  assert.equal(g.kv.get("tokenizer.ggml.bos_token_id"), 1);
  assert.equal(g.kv.get("tokenizer.ggml.eos_token_id"), 2);
});

Deno.test("tensor infos have llama shapes and 32-byte aligned, non-overlapping data", () => {
  for (const [name, opts] of Object.entries(TINY_MODELS)) {
    const bytes = tinyModel(name);
    const g = parseGguf(bytes);
    const nVocab = (g.kv.get("tokenizer.ggml.tokens") as string[]).length;
    const byName = new Map(g.tensors.map((t) => [t.name, t]));
    assert.deepEqual(byName.get("token_embd.weight")?.dims, [opts.embd, nVocab]);
    assert.deepEqual(byName.get("output_norm.weight")?.dims, [opts.embd]);
    assert.equal(byName.has("output.weight"), opts.output === true);
    for (let n = 0; n < opts.layers; n++) {
      assert.deepEqual(byName.get(`blk.${n}.attn_q.weight`)?.dims, [opts.embd, opts.embd]);
      assert.deepEqual(byName.get(`blk.${n}.attn_k.weight`)?.dims, [opts.embd, opts.embd]);
      assert.deepEqual(byName.get(`blk.${n}.ffn_gate.weight`)?.dims, [opts.embd, opts.ff]);
      assert.deepEqual(byName.get(`blk.${n}.ffn_down.weight`)?.dims, [opts.ff, opts.embd]);
    }
    assert.ok(!byName.has(`blk.${opts.layers}.attn_q.weight`));
    assert.equal(g.tensors.length, 2 + (opts.output ? 1 : 0) + 9 * opts.layers);

    assert.equal(g.dataStart % GGUF_ALIGNMENT, 0);
    let end = 0;
    for (const t of g.tensors) {
      assert.equal(t.type, 0, `${t.name} is F32`);
      assert.equal(t.offset % GGUF_ALIGNMENT, 0, `${t.name} offset is aligned`);
      assert.ok(t.offset >= end, `${t.name} does not overlap the previous tensor`);
      end = t.offset + t.dims.reduce((a, b) => a * b, 1) * 4;
    }
    assert.ok(g.dataStart + end <= bytes.length, `${name}: tensor data fits in the file`);
    assert.ok(bytes.length > 100_000 && bytes.length < 8_000_000, `${name}: ${bytes.length} bytes`);
  }
});

Deno.test("the same options give the same bytes and another seed gives other weights", () => {
  const opts = { seed: 7, embd: 32, layers: 1, heads: 2, ff: 64, ctx: 128 };
  const a = writeTinyLlama(opts);
  assert.deepEqual(writeTinyLlama(opts), a);
  const b = writeTinyLlama({ ...opts, seed: 8 });
  assert.equal(b.length, a.length);
  assert.notDeepEqual(b, a);
});

Deno.test("weights are finite and norms are one", () => {
  const bytes = tinyModel("tiny-c");
  const g = parseGguf(bytes);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (const t of g.tensors) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const base = g.dataStart + t.offset;
    for (let i = 0; i < n; i++) {
      const v = view.getFloat32(base + i * 4, true);
      assert.ok(Number.isFinite(v) && Math.abs(v) < 10, `${t.name}[${i}] = ${v}`);
      if (t.name.endsWith("norm.weight")) assert.equal(v, 1);
    }
  }
});

Deno.test("a head size that is odd is refused", () => {
  assert.throws(
    () => writeTinyLlama({ seed: 1, embd: 12, layers: 1, heads: 4, ff: 16, ctx: 64 }),
    RangeError,
  );
});
