// Under a load whose KV need exceeds capacity the engine preempts (vllm:num_preemptions_total rises)
// and every request still completes; with --kv-offloading-size, fewer prompt tokens are recomputed.
import { test } from "node:test";
import assert from "node:assert/strict";
import { getText, metric, postJson, startTestSim, tokenIds } from "../helpers.js";

async function overload(
  extra: string[],
): Promise<{ preemptions: number; recomputed: number; offloadHits: number }> {
  // 48 blocks of 16 tokens = 768 tokens of KV; 12 requests × (160 prompt + 120 output) need ~3,360.
  const sim = await startTestSim("facebook/opt-125m", [
    "--num-gpu-blocks-override",
    "48",
    "--time-scale",
    "0.05",
    "--max-num-seqs",
    "16",
    "--no-enable-prefix-caching",
    ...extra,
  ]);
  try {
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) =>
        postJson(`${sim.url}/v1/completions`, {
          prompt: tokenIds(160, i + 1),
          max_tokens: 120,
          ignore_eos: true,
        }),
      ),
    );
    for (const r of results) {
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].finish_reason, "length");
      assert.equal(r.json.usage.completion_tokens, 120);
    }
    const m = (await getText(`${sim.url}/metrics`)).text;
    assert.equal(metric(m, "vllm:num_requests_running"), 0);
    assert.equal(
      metric(
        m,
        'vllm:request_success_total{model_name="facebook/opt-125m",engine="0",finished_reason="length"}',
      ),
      12,
    );
    return {
      preemptions: metric(m, "vllm:num_preemptions_total"),
      recomputed: metric(m, "switchyard_sim_recomputed_tokens_total"),
      offloadHits: metric(m, "switchyard_sim_offload_hit_tokens_total"),
    };
  } finally {
    await sim.close();
  }
}

test("KV need above capacity: preemptions rise, every request completes; offload cuts recompute", async () => {
  const base = await overload([]);
  assert.ok(base.preemptions > 0, `expected preemptions, got ${base.preemptions}`);
  assert.ok(base.recomputed > 0);
  const off = await overload(["--kv-offloading-size", "0.05"]);
  console.log(
    `preemptions ${base.preemptions} -> ${off.preemptions}; recomputed prompt tokens ${base.recomputed} -> ${off.recomputed}; CPU hits ${off.offloadHits} tokens`,
  );
  assert.ok(off.offloadHits > 0, "the CPU tier served some tokens");
  assert.ok(
    off.recomputed < base.recomputed,
    `offload should cut recomputed tokens (${off.recomputed} vs ${base.recomputed})`,
  );
});
