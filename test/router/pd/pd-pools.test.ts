// When the router runs the P/D flow and what it does when the prefill side cannot help: no prefill
// pool → ordinary routing; a prefill engine without a connector → the decode engine computes the
// prompt (no_params); every prefill engine failing → fallback to a full request on a decode engine;
// a client already sending kv_transfer_params → passed through untouched.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { RunningSim } from "../../../src/sim/app.js";
import { getText, metric, startTestSim } from "../../sim/helpers.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "facebook/opt-125m";
const consumerArgs = ["--kv-transfer-config", '{"kv_connector":"NixlConnector","kv_role":"kv_consumer"}'];
const PROMPT = "The quick brown fox jumps over the lazy dog. ".repeat(20);

async function m(s: RunningSim, name: string): Promise<number> {
  return metric((await getText(`${s.url}/metrics`)).text, name);
}

function outcomes(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const mm of text.matchAll(
    /^switchyard_disagg_requests_total\{[^}]*outcome="([a-z_]+)"[^}]*\} (\d+)/gm,
  ))
    out[mm[1]!] = Number(mm[2]);
  return out;
}

async function withFleet(
  specs: Array<{ role: "prefill" | "decode" | "both"; args: string[] }>,
  fn: (sims: RunningSim[], url: string) => Promise<void>,
): Promise<void> {
  const sims = await Promise.all(specs.map((s) => startTestSim(MODEL, s.args)));
  const router = await routerFor(
    sims.map((s, i) => ({ url: s.url, role: specs[i]!.role })),
    { policy: "least-load" },
  );
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "all engines");
    await fn(sims, router.url);
  } finally {
    await router.close();
    for (const s of sims) await s.close();
  }
}

test("no prefill pool: ordinary routing, nothing added to the request", async () => {
  await withFleet(
    [
      { role: "decode", args: consumerArgs },
      { role: "both", args: [] },
    ],
    async ([decode], url) => {
      for (let i = 0; i < 4; i++) {
        const r = await post(`${url}/v1/completions`, { model: MODEL, prompt: PROMPT, max_tokens: 2 });
        assert.equal(r.status, 200);
      }
      assert.equal(await m(decode!, "vllm:external_prefix_cache_queries_total"), 0);
      assert.deepEqual(outcomes((await getText(`${url}/metrics`)).text), {});
    },
  );
});

test("a prefill engine without a connector answers no params: the decode engine computes the prompt", async () => {
  await withFleet(
    [
      { role: "prefill", args: [] },
      { role: "decode", args: consumerArgs },
    ],
    async ([prefill, decode], url) => {
      const r = await post(`${url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        max_tokens: 5,
        ignore_eos: true,
      });
      assert.equal(r.status, 200);
      assert.equal(((await r.json()) as { usage: { completion_tokens: number } }).usage.completion_tokens, 5);
      assert.equal(await m(prefill!, "vllm:request_generation_tokens_sum"), 1);
      assert.equal(await m(decode!, "switchyard_sim_nixl_transfers_total"), 0);
      assert.equal(await m(decode!, "vllm:external_prefix_cache_queries_total"), 0);
      assert.deepEqual(outcomes((await getText(`${url}/metrics`)).text), { no_params: 1 });
    },
  );
});

test("every prefill engine failing: retried on each, then the decode engine serves the whole request", async () => {
  const failing = ["--fail-rate", "1", "--fail-status", "503"];
  await withFleet(
    [
      { role: "prefill", args: failing },
      { role: "prefill", args: failing },
      { role: "decode", args: consumerArgs },
    ],
    async ([, , decode], url) => {
      const r = await post(`${url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        max_tokens: 3,
        ignore_eos: true,
        stream: true,
      });
      assert.equal(r.status, 200);
      const text = await r.text();
      assert.match(text, /data: \[DONE\]/);
      assert.doesNotMatch(text, /"error"/);
      assert.equal(await m(decode!, "vllm:request_generation_tokens_sum"), 3);
      const routerMetrics = (await getText(`${url}/metrics`)).text;
      assert.deepEqual(outcomes(routerMetrics), { fallback: 1 });
      const tried = [
        ...routerMetrics.matchAll(
          /^switchyard_disagg_prefill_attempts_total\{[^}]*result="status_503"[^}]*\} (\d+)/gm,
        ),
      ];
      assert.equal(tried.length, 2, "both prefill engines were tried once");
    },
  );
});

test("a request that already carries kv_transfer_params is passed through untouched", async () => {
  await withFleet(
    [
      { role: "prefill", args: consumerArgs },
      { role: "decode", args: consumerArgs },
    ],
    async (sims, url) => {
      const r = await post(`${url}/v1/completions`, {
        model: MODEL,
        prompt: PROMPT,
        max_tokens: 2,
        kv_transfer_params: { do_remote_prefill: true },
      });
      assert.equal(r.status, 200);
      let queried = 0;
      for (const s of sims) queried += await m(s, "vllm:external_prefix_cache_queries_total");
      assert.ok(queried > 0, "the engine saw the client's params");
      assert.deepEqual(outcomes((await getText(`${url}/metrics`)).text), {});
    },
  );
});
