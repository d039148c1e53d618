// vLLM's and LMCache's defaults are said once (src/config/vllm-defaults.ts) and every part of the stack
// that assumes them starts from there: the engine model, the sim's flags, the fleet simulator, the cache
// server, discovery and the router's config. A literal copy elsewhere in src fails here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import {
  CACHE_SERVER_PORT,
  LMCACHE_CHUNK_TOKENS,
  VLLM_BLOCK_SIZE,
  VLLM_GPU_MEMORY_UTILIZATION,
  VLLM_PORT,
} from "../../src/config/vllm-defaults.js";
import { defaultEngineConfig } from "../../src/engine/index.js";
import { PINNED_HASH_SEED } from "../../src/protocol/vllm-releases.js";
import { resolveGpu, resolveModel } from "../../src/models/index.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import { DEFAULT_PORT } from "../../src/cacheserver/server.js";
import { DEFAULT_EVENT_CHUNK_TOKENS } from "../../src/cacheserver/kv-events.js";
import { repoRoot } from "../deploy/tools.js";
import { filesUnder } from "../helpers/files.js";

test("the engine model and the sim start from vLLM's block size, memory share, port and hash seed", () => {
  const c = defaultEngineConfig(resolveModel("meta-llama/Llama-3.1-8B-Instruct"), resolveGpu("h100"));
  assert.equal(c.blockSize, VLLM_BLOCK_SIZE);
  assert.equal(c.gpuMemoryUtilization, VLLM_GPU_MEMORY_UTILIZATION);
  assert.equal(c.hashSeed, PINNED_HASH_SEED);
  const sim = parseSimArgs(["meta-llama/Llama-3.1-8B-Instruct"], {});
  assert.equal(sim.port, VLLM_PORT);
  assert.equal(sim.blockSize, VLLM_BLOCK_SIZE);
  assert.equal(sim.gpuMemoryUtilization, VLLM_GPU_MEMORY_UTILIZATION);
  assert.equal(sim.hashSeed, PINNED_HASH_SEED);
  assert.deepEqual(
    [VLLM_BLOCK_SIZE, VLLM_GPU_MEMORY_UTILIZATION, VLLM_PORT, PINNED_HASH_SEED],
    [16, 0.9, 8000, "0"],
  );
});

test("the cache server listens and chunks its events as LMCache's engines expect by default", () => {
  assert.equal(DEFAULT_PORT, CACHE_SERVER_PORT);
  assert.equal(DEFAULT_EVENT_CHUNK_TOKENS, LMCACHE_CHUNK_TOKENS);
  assert.equal(LMCACHE_CHUNK_TOKENS, 256);
});

// the two places whose hash-seed and block literals are being reworked on their own
const ELSEWHERE = [
  join("src", "router", "kv"),
  join("src", "router", "engines"),
  join("src", "protocol", "block-hashing.ts"),
  // the hash seeds of each release, said once there
  join("src", "protocol", "vllm-releases.ts"),
];
/** each default with the words a line that writes it would hold: a literal beside them is a copy */
const COPIES: readonly [literal: RegExp, words: RegExp][] = [
  [/(?<![\w.])16(?![\w.])/, /block.?size/i],
  [/(?<![\w.])256(?![\w.])/, /chunk.?(size|tokens)/i],
  [/(?<![\w.])0\.9(?![\w.])/, /utili[sz]ation/i],
  [/(?<![\w.])8000(?![\w.])/, /port/i],
  [/(?<![\w.])65432(?![\w.])/, /./],
  [/["']0["']/, /hash.?seed/i],
];

test("no file in src writes one of vLLM's shared defaults as a literal of its own", () => {
  const root = repoRoot();
  const copies: string[] = [];
  for (const file of filesUnder(join(root, "src"))) {
    const rel = relative(root, file);
    if (rel === join("src", "config", "vllm-defaults.ts") || ELSEWHERE.some((e) => rel.startsWith(e)))
      continue;
    const code = readFileSync(file, "utf8")
      .split("\n")
      // a comment says what it likes
      .map((line) => (/^\s*(\/\/|\/\*|\*)/.test(line) ? "" : line.replace(/\/\/.*$/, "")));
    code.forEach((line, i) => {
      // a flag's default sits a few lines under the flag's name
      const near = /^\s*default:/.test(line) ? code.slice(Math.max(0, i - 3), i + 1).join("\n") : line;
      if (COPIES.some(([literal, words]) => literal.test(line) && words.test(near)))
        copies.push(`${rel}:${i + 1}: ${line.trim()}`);
    });
  }
  assert.deepEqual(copies, [], "literal copies of vLLM's defaults");
});
