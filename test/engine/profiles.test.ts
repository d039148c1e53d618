import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { GPUS, MODELS, loadProfilesFile, resolveGpu, resolveModel } from "../../src/models/profiles.js";
import { defaultEngineConfig } from "../../src/engine/config.js";
import { kvCapacity } from "../../src/engine/capacity.js";

test("models resolve case-insensitively, base and -Instruct alike, with real vocab sizes", () => {
  assert.equal(resolveModel("meta-llama/llama-3.1-8b").id, "meta-llama/Llama-3.1-8B-Instruct");
  assert.equal(resolveModel("META-LLAMA/Llama-3.1-8B-Instruct").vocabSize, 128256);
  assert.equal(resolveModel("meta-llama/Llama-3.1-70B").layers, 80);
  assert.equal(resolveModel("Qwen/Qwen3-32B").vocabSize, 151936);
  assert.equal(resolveModel("Qwen/Qwen2.5-0.5B").vocabSize, 151936);
  assert.equal(resolveModel("qwen/qwen2.5-0.5b-instruct").kvHeads, 2);
  assert.equal(resolveModel("facebook/opt-125m").vocabSize, 50272);
  assert.deepEqual(
    MODELS.map((m) => m.tokenizer),
    ["llama3", "llama3", "qwen", "qwen", "opt"],
  );
  assert.throws(
    () => resolveModel("nope/model"),
    /unknown model "nope\/model"; known: .*Llama-3.1-8B.*profiles YAML/,
  );
});

test("GPUs resolve by id; unknown names the known ids", () => {
  assert.deepEqual(GPUS.map((g) => g.id).slice(0, 5), ["h100", "h200", "a100", "l40s", "l4"]);
  assert.equal(resolveGpu("H100").bf16Flops, 989.4e12);
  assert.throws(() => resolveGpu("tpu"), /unknown GPU "tpu"; known: h100, h200, a100, l40s, l4/);
});

test("defaults follow vLLM's API-server batch defaults per GPU", () => {
  const m = resolveModel("meta-llama/Llama-3.1-8B");
  const h100 = defaultEngineConfig(m, resolveGpu("h100"));
  assert.equal(h100.maxNumSeqs, 1024);
  assert.equal(h100.maxNumBatchedTokens, 8192);
  assert.equal(h100.blockSize, 16);
  assert.equal(h100.enablePrefixCaching, true);
  assert.equal(h100.maxModelLen, 131072);
  const a100 = defaultEngineConfig(m, resolveGpu("a100"));
  assert.equal(a100.maxNumSeqs, 256);
  assert.equal(a100.maxNumBatchedTokens, 2048);
  assert.equal(defaultEngineConfig(m, resolveGpu("l4"), { maxModelLen: 8192 }).maxNumBatchedTokens, 2048);
});

test("validation names the field", () => {
  const m = resolveModel("meta-llama/Llama-3.1-8B");
  const g = resolveGpu("h100");
  assert.throws(() => defaultEngineConfig(m, g, { tensorParallelSize: 0 }), /tensor_parallel_size/);
  assert.throws(() => defaultEngineConfig(m, g, { tensorParallelSize: 3 }), /tensor_parallel_size .*divide/);
  assert.throws(() => defaultEngineConfig(m, g, { gpuMemoryUtilization: 0 }), /gpu_memory_utilization/);
  assert.throws(() => defaultEngineConfig(m, g, { gpuMemoryUtilization: 1.2 }), /gpu_memory_utilization/);
  assert.throws(() => defaultEngineConfig(m, g, { maxModelLen: 200000 }), /max_model_len .*131072/);
  assert.throws(() => defaultEngineConfig(m, g, { maxNumSeqs: 0 }), /max_num_seqs/);
  assert.throws(
    () => defaultEngineConfig(m, g, { maxNumBatchedTokens: 100, maxNumSeqs: 256 }),
    /max_num_batched_tokens/,
  );
  assert.throws(() => defaultEngineConfig(m, g, { blockSize: 0 }), /block_size/);
  assert.throws(() => defaultEngineConfig(m, g, { hashSeed: "" }), /hash_seed/);
});

test("capacity: Llama-3.1-8B on one H100 at 0.9 has 28088 blocks of 2 MiB", () => {
  // (81559 MiB × 0.9 − 16.06 GB weights − 2.00 GB reserve) / 2 MiB = 28088 (449,408 tokens)
  const c = kvCapacity(defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B"), resolveGpu("h100")));
  assert.equal(c.kvBytesPerToken, 128 * 1024);
  assert.equal(c.blockBytesPerGpu, 2 * 1024 * 1024);
  assert.equal(c.weightBytesPerGpu, 16_060_522_496);
  assert.equal(c.reserveBytes, 2_001_731_584);
  assert.equal(c.numGpuBlocks, 28088);
  assert.equal(c.numCpuBlocks, 0);
});

test("capacity: TP divides weights and KV heads; Qwen3-32B KV is 256 KiB/token in all", () => {
  const q = resolveModel("Qwen/Qwen3-32B");
  const c = kvCapacity(defaultEngineConfig(q, resolveGpu("h100"), { tensorParallelSize: 2 }));
  assert.equal(c.kvBytesPerToken * 2, 256 * 1024);
  assert.equal(c.weightBytesPerGpu, Math.ceil((q.params * 2) / 2));
  const l70 = kvCapacity(
    defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-70B"), resolveGpu("h100"), {
      tensorParallelSize: 4,
    }),
  );
  assert.equal(l70.kvBytesPerToken * 4, 320 * 1024);
  // offload: 10 GiB of host memory in 2 MiB blocks
  const off = kvCapacity(
    defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B"), resolveGpu("h100"), {
      offload: { backend: "native", bytes: 10 * 2 ** 30 },
    }),
  );
  assert.equal(off.numCpuBlocks, 5120);
});

test("capacity: a model that does not fit says so", () => {
  const cfg = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-70B"), resolveGpu("h100"));
  assert.throws(() => kvCapacity(cfg), /not enough memory for the weights.*Llama-3.1-70B.*h100/);
  const tight = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B"), resolveGpu("l4"), {
    maxModelLen: 131072,
    gpuMemoryUtilization: 0.9,
  });
  assert.throws(() => kvCapacity(tight), /not enough memory|max_model_len/);
});

test("profiles YAML adds GPUs and models, and rejects bad fields by name", (t) => {
  const dir = mkdtempSync(join(tmpdir(), "profiles-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const good = join(dir, "good.yaml");
  writeFileSync(
    good,
    `gpus:\n  - {id: TestGPU, name: T, hbmBytes: 1.0e11, bf16Flops: 1.0e15, hbmBandwidth: 4.0e12, hostLinkBandwidth: 5.0e10, source: test}\n` +
      `models:\n  - {id: acme/Tiny-1B-Instruct, params: 1.0e9, layers: 16, hiddenSize: 2048, numHeads: 16, kvHeads: 4, headDim: 128, dtypeBytes: 2, dtype: bfloat16, maxContext: 8192, vocabSize: 32000, tokenizer: llama3, source: test}\n`,
  );
  const added = loadProfilesFile(good);
  assert.equal(added.gpus.length, 1);
  assert.equal(resolveGpu("testgpu").hbmBandwidth, 4e12);
  assert.equal(resolveModel("acme/tiny-1b").vocabSize, 32000);
  const bad = join(dir, "bad.yaml");
  writeFileSync(bad, `models:\n  - {id: x, params: -1}\n`);
  assert.throws(() => loadProfilesFile(bad), /invalid profiles file .*models\.0\.params/);
  assert.throws(() => loadProfilesFile(join(dir, "missing.yaml")), /cannot read profiles file/);
  // the shipped example parses
  loadProfilesFile("profiles/example.yaml");
  assert.equal(resolveModel("mistralai/Mistral-7B-v0.3").kvHeads, 8);
});
