// NixlConnector in the sim: kv_role parsing and refusals, a producer answering do_remote_decode with
// vLLM's kv_transfer_params and holding the KV until read or timed out, a consumer pulling it over
// the side channel instead of computing the prompt, and the failure paths (read twice, other prompt,
// expired, producer gone) computing locally with vllm:nixl_num_failed_transfers counted.
import { test } from "node:test";
import assert from "node:assert/strict";
import { parseSimArgs } from "../../../src/sim/config/config.js";
import { startSim, type RunningSim } from "../../../src/sim/app.js";
import { NIXL_RDMA_BPS_PER_RANK } from "../../../src/sim/config/disagg-config.js";
import { getText, metric, postJson, startTestSim } from "../helpers.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const nixl = (role: string, extra: Record<string, unknown> = {}) => [
  "--kv-transfer-config",
  JSON.stringify({ kv_connector: "NixlConnector", kv_role: role, ...extra }),
];
const PROMPT = "Disaggregation splits prefill from decode. ".repeat(60);

async function metrics(s: RunningSim): Promise<string> {
  return (await getText(`${s.url}/metrics`)).text;
}

async function prefill(p: RunningSim, prompt = PROMPT): Promise<Record<string, unknown>> {
  const r = await postJson(`${p.url}/v1/completions`, {
    model: MODEL,
    prompt,
    max_tokens: 1,
    stream: false,
    kv_transfer_params: { do_remote_decode: true, do_remote_prefill: false },
  });
  assert.equal(r.status, 200, r.text);
  return r.json.kv_transfer_params as Record<string, unknown>;
}

test("config: kv_role, engine_id, bandwidth and the abort timeout; refusals name the problem", () => {
  const o = parseSimArgs([MODEL, ...nixl("kv_producer", { engine_id: "prefill-0" })], {
    VLLM_NIXL_ABORT_REQUEST_TIMEOUT: "30",
    VLLM_NIXL_SIDE_CHANNEL_HOST: "10.0.0.7",
  });
  assert.equal(o.lmcache, null);
  assert.deepEqual(o.disagg, {
    connector: "NixlConnector",
    role: "kv_producer",
    engineId: "prefill-0",
    bandwidthPerRank: NIXL_RDMA_BPS_PER_RANK,
    abortTimeoutSecs: 30,
    sideChannelHost: "10.0.0.7",
  });
  const c = parseSimArgs([MODEL, ...nixl("kv_consumer"), "--kv-transfer-bandwidth", "12.5"], {});
  assert.equal(c.disagg?.bandwidthPerRank, 12.5e9);
  assert.equal(c.disagg?.abortTimeoutSecs, 480);
  // LMCache still works through the same flag
  const lm = parseSimArgs(
    [MODEL, "--kv-transfer-config", '{"kv_connector":"LMCacheConnectorV1","kv_role":"kv_both"}'],
    {},
  );
  assert.equal(lm.disagg, null);
  assert.notEqual(lm.lmcache, null);
  for (const [args, env, pattern] of [
    [[...nixl("kv_decoder")], {}, /kv_role must be one of kv_producer, kv_consumer, kv_both/],
    [["--kv-transfer-config", '{"kv_connector":"NixlConnector"}'], {}, /kv_role/],
    [["--kv-transfer-bandwidth", "10"], {}, /needs --kv-transfer-config naming NixlConnector/],
    [[...nixl("kv_both"), "--kv-transfer-bandwidth", "0"], {}, /must be > 0/],
    [[...nixl("kv_both")], { VLLM_NIXL_ABORT_REQUEST_TIMEOUT: "soon" }, /VLLM_NIXL_ABORT_REQUEST_TIMEOUT/],
    [[...nixl("kv_both"), "--kv-offloading-backend", "lmcache"], {}, /cannot be combined/],
    [
      ["--kv-transfer-config", '{"kv_connector":"P2pNcclConnector","kv_role":"kv_both"}'],
      {},
      /NixlConnector/,
    ],
  ] as const) {
    assert.throws(() => parseSimArgs([MODEL, ...args], env), pattern);
  }
});

test("producer → consumer: vLLM's kv_transfer_params, the KV pulled instead of computed, held KV released", async () => {
  const p = await startTestSim(MODEL, nixl("kv_producer"));
  const c = await startTestSim(MODEL, nixl("kv_consumer"));
  try {
    const params = await prefill(p);
    assert.equal(params.do_remote_prefill, true);
    assert.equal(params.do_remote_decode, false);
    assert.match(
      String(params.remote_engine_id),
      /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-a[0-9a-f]{3}-[0-9a-f]{12}$/,
    );
    assert.match(String(params.remote_request_id), /^cmpl-[0-9a-f]+-[0-9a-f]{8}$/);
    assert.equal(params.remote_host, "127.0.0.1");
    assert.equal(params.remote_port, p.port);
    assert.equal(params.tp_size, 1);
    const blocks = params.remote_block_ids as number[];
    const tokens = (await postJson(`${p.url}/tokenize`, { model: MODEL, prompt: PROMPT })).json
      .count as number;
    assert.equal(blocks.length, Math.ceil(tokens / 16));
    assert.ok(
      blocks.every((b) => Number.isInteger(b) && b >= 0),
      "block ids",
    );
    let pm = await metrics(p);
    assert.equal(metric(pm, "switchyard_sim_nixl_held_requests"), 1);
    assert.equal(metric(pm, "switchyard_sim_nixl_held_blocks"), blocks.length);

    // the same engine answers a second prefill with other blocks (a free-queue cursor)
    const again = await prefill(p);
    assert.notDeepEqual(again.remote_block_ids, blocks);
    assert.notEqual(again.remote_request_id, params.remote_request_id);

    const d = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 4,
      ignore_eos: true,
      kv_transfer_params: params,
    });
    assert.equal(d.status, 200, d.text);
    assert.equal(d.json.usage.completion_tokens, 4);
    assert.equal(d.json.kv_transfer_params, null);
    const cm = await metrics(c);
    assert.equal(metric(cm, "switchyard_sim_nixl_transfers_total"), 1);
    assert.equal(metric(cm, "switchyard_sim_nixl_transferred_tokens_total"), tokens);
    // the engine computes only the last partial block (at least one token) and the outputs
    const ext = metric(cm, "vllm:external_prefix_cache_hits_total");
    assert.equal(ext, Math.floor((tokens - 1) / 16) * 16);
    assert.equal(metric(cm, "vllm:external_prefix_cache_queries_total"), tokens);
    assert.equal(metric(cm, "vllm:iteration_tokens_total_sum"), tokens - ext + 3);
    // vLLM's NIXL series, and the modelled transfer time: bytes ÷ (40 GB/s × TP 1)
    const bytes = tokens * 2 * 32 * 8 * 128 * 2;
    assert.equal(metric(cm, "vllm:nixl_bytes_transferred_sum"), bytes);
    assert.ok(Math.abs(metric(cm, "vllm:nixl_xfer_time_seconds_sum") - bytes / 40e9) < 1e-9, "xfer time");
    assert.equal(metric(cm, "vllm:nixl_num_failed_transfers_total"), 0);

    pm = await metrics(p);
    assert.equal(metric(pm, "switchyard_sim_nixl_reads_served_total"), 1);
    assert.equal(metric(pm, "switchyard_sim_nixl_held_requests"), 1, "the second prefill is still held");

    // read twice: the KV is gone; the consumer computes the prompt and counts a failed transfer
    const twice = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: `${PROMPT} and more`,
      max_tokens: 2,
      kv_transfer_params: params,
    });
    assert.equal(twice.status, 200);
    // another prompt than the one prefilled: refused too
    const other = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: "Something else entirely. ".repeat(50),
      max_tokens: 2,
      kv_transfer_params: again,
    });
    assert.equal(other.status, 200);
    const cm2 = await metrics(c);
    assert.equal(metric(cm2, "vllm:nixl_num_failed_transfers_total"), 2);
    assert.equal(metric(cm2, "switchyard_sim_nixl_transfers_total"), 1);
    assert.equal(metric(await metrics(p), "switchyard_sim_nixl_reads_refused_total"), 2);

    // params without the remote fields: computed locally, nothing counted as a transfer
    const bare = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: "x y z",
      max_tokens: 1,
      kv_transfer_params: { do_remote_prefill: true },
    });
    assert.equal(bare.status, 200);
    assert.equal(metric(await metrics(c), "vllm:nixl_num_failed_transfers_total"), 2);
  } finally {
    await p.close();
    await c.close();
  }
});

test("held KV expires after VLLM_NIXL_ABORT_REQUEST_TIMEOUT; a stopped producer fails the transfer, not the request", async () => {
  const opts = parseSimArgs([MODEL, "--host", "127.0.0.1", "--port", "0", ...nixl("kv_both")], {
    VLLM_NIXL_ABORT_REQUEST_TIMEOUT: "0.2",
  });
  const p = await startSim(opts);
  const c = await startTestSim(MODEL, nixl("kv_consumer"));
  try {
    const expired = await prefill(p);
    await new Promise((r) => setTimeout(r, 300));
    const pm = await metrics(p);
    assert.equal(metric(pm, "switchyard_sim_nixl_held_requests"), 0);
    assert.equal(metric(pm, "switchyard_sim_nixl_expired_total"), 1);
    const late = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: PROMPT,
      max_tokens: 2,
      kv_transfer_params: expired,
    });
    assert.equal(late.status, 200);
    const fresh = await prefill(p, `${PROMPT} fresh`);
    await p.close();
    const orphan = await postJson(`${c.url}/v1/completions`, {
      model: MODEL,
      prompt: `${PROMPT} fresh`,
      max_tokens: 2,
      kv_transfer_params: fresh,
    });
    assert.equal(orphan.status, 200);
    const cm = await metrics(c);
    assert.equal(metric(cm, "vllm:nixl_num_failed_transfers_total"), 2);
    assert.equal(metric(cm, "switchyard_sim_nixl_transfers_total"), 0);
  } finally {
    await p.close();
    await c.close();
  }
});

test("without a connector kv_transfer_params are accepted and ignored, and the answer carries null", async () => {
  const s = await startTestSim(MODEL);
  try {
    const r = await postJson(`${s.url}/v1/chat/completions`, {
      model: MODEL,
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 1,
      kv_transfer_params: { do_remote_decode: true },
    });
    assert.equal(r.status, 200);
    assert.equal(r.json.kv_transfer_params, null);
    const read = await postJson(`${s.url}/switchyard/nixl/read`, {
      remote_request_id: "x",
      remote_engine_id: "y",
    });
    assert.equal(read.status, 404);
    assert.doesNotMatch(await getText(`${s.url}/metrics`).then((m) => m.text), /nixl/);
  } finally {
    await s.close();
  }
});
