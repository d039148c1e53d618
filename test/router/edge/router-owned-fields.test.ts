// The request fields the router owns with tenancy on, against a live router and a recording engine: a
// client's body `priority` never reaches the engine as sent (dropped, or set from the tenant's band and
// clamped inside it where the tenant allows), and `vllm_xargs` reaches it cut to the keys the operator
// lists, never with `kv_transfer_params` or `ec_transfer_params` (vLLM copies vllm_xargs into the
// request's extra_args, where its KV connectors read them), on chat and completions alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hashKey } from "../../../src/tenancy/keys.js";
import { enginePriority, ownRequestFields } from "../../../src/tenancy/request-fields.js";
import { parseTenancyConfig } from "../../../src/tenancy/config.js";
import { startFakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { routerFor, post } from "../../helpers/router.js";

const MODEL = "fake/model-a";
const KEY_LOW = "sk-fields-low-0000000000";
const KEY_HIGH = "sk-fields-high-000000000";

const STOLEN_KV = { do_remote_prefill: true, remote_host: "evil.example", remote_block_ids: [1, 2, 3] };

function tenancy(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    tenants: { low: { priority: -1 }, high: { priority: 1, clientPriority: "clamp" } },
    keys: [
      { hash: hashKey(KEY_LOW), tenant: "low" },
      { hash: hashKey(KEY_HIGH), tenant: "high" },
    ],
    ...extra,
  };
}

async function sent(
  url: string,
  engine: Awaited<ReturnType<typeof startFakeVllm>>,
  key: string,
  path: "/v1/chat/completions" | "/v1/completions",
  fields: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const body =
    path === "/v1/chat/completions"
      ? { model: MODEL, messages: [{ role: "user", content: "hi" }], max_tokens: 2, ...fields }
      : { model: MODEL, prompt: "hi", max_tokens: 2, ...fields };
  const res = await post(`${url}${path}`, body, { authorization: `Bearer ${key}` });
  assert.equal(res.status, 200, await res.clone().text());
  await res.arrayBuffer();
  const got = engine.seen.at(-1)!;
  assert.equal(got.url, path);
  return JSON.parse(got.body) as Record<string, unknown>;
}

test("a client's body priority and vllm_xargs.kv_transfer_params never reach the engine as sent (tenants default to drop)", async () => {
  const engine = await startFakeVllm("e");
  const r = await routerFor([engine.url], { tenancy: tenancy() });
  try {
    for (const path of ["/v1/chat/completions", "/v1/completions"] as const) {
      const body = await sent(r.url, engine, KEY_LOW, path, {
        priority: -100,
        vllm_xargs: { kv_transfer_params: STOLEN_KV, ec_transfer_params: { x: 1 }, custom: "v" },
        ec_transfer_params: { remote_host: "evil.example" },
      });
      assert.equal(body.priority, undefined, "a low-band client cannot jump the queue");
      assert.equal(body.vllm_xargs, undefined, "no key of vllm_xargs is allowed but agentic_context");
      assert.equal(body.ec_transfer_params, undefined);
      assert.ok(!JSON.stringify(body).includes("evil.example"));
    }
    // the agentic context the router reads itself passes, and nothing beside it
    const body = await sent(r.url, engine, KEY_LOW, "/v1/chat/completions", {
      vllm_xargs: { agentic_context: { program_id: "p1" }, kv_transfer_params: STOLEN_KV },
    });
    assert.deepEqual(body.vllm_xargs, { agentic_context: { program_id: "p1" } });
  } finally {
    await r.close();
    await engine.close();
  }
});

test("with enginePriority.fromBand the engine's priority is the band's, and a clamping tenant's client only orders its own requests inside it", async () => {
  const engine = await startFakeVllm("e");
  const r = await routerFor([engine.url], {
    tenancy: tenancy({ enginePriority: { fromBand: true, bandWidth: 100 }, vllmXargs: ["custom"] }),
  });
  try {
    // band -1 (drop): -(-1)·100 = 100 whatever the client asks
    const low = await sent(r.url, engine, KEY_LOW, "/v1/completions", { priority: -100 });
    assert.equal(low.priority, 100);
    const lowPlain = await sent(r.url, engine, KEY_LOW, "/v1/completions", {});
    assert.equal(lowPlain.priority, 100);
    // band 1 (clamp): -100 + clamp(p, 0, 99)
    const high = await sent(r.url, engine, KEY_HIGH, "/v1/chat/completions", {
      priority: -1000,
      vllm_xargs: { custom: "v", kv_transfer_params: STOLEN_KV },
    });
    assert.equal(high.priority, -100, "a client cannot go above its band's top");
    assert.deepEqual(high.vllm_xargs, { custom: "v" }, "listed keys pass, transfer keys never");
    const highLate = await sent(r.url, engine, KEY_HIGH, "/v1/chat/completions", { priority: 5000 });
    assert.equal(highLate.priority, -1, "nor below its band's bottom, into the next band");
    const highMid = await sent(r.url, engine, KEY_HIGH, "/v1/chat/completions", { priority: 7 });
    assert.equal(highMid.priority, -93);
  } finally {
    await r.close();
    await engine.close();
  }
});

test("enginePriority: bands never overlap, a higher band is always served first, and the transfer keys cannot be allow-listed", () => {
  const rule = (band: number, client: "drop" | "clamp") => ({ band, client, fromBand: true, bandWidth: 10 });
  for (let band = -3; band < 3; band++) {
    const worstOfHigher = enginePriority(rule(band + 1, "clamp"), 1e9) ?? 0;
    const bestOfLower = enginePriority(rule(band, "clamp"), -1e9) ?? 0;
    assert.ok(worstOfHigher < bestOfLower, `band ${band + 1} ahead of band ${band}`);
  }
  assert.equal(enginePriority({ band: 5, client: "drop", fromBand: false, bandWidth: 10 }, -3), undefined);
  assert.equal(enginePriority({ band: 0, client: "clamp", fromBand: false, bandWidth: 10 }, 3.5), undefined);
  assert.throws(
    () => parseTenancyConfig({ vllmXargs: ["kv_transfer_params"] }),
    /tenancy\.vllmXargs: kv_transfer_params and ec_transfer_params are set by the router only/,
  );
});

test("a token-in generate request's sampling_params.extra_args is cut like vllm_xargs: the transfer keys never pass", () => {
  const rule = { band: 0, client: "drop" as const, fromBand: false, bandWidth: 1000 };
  const body: Record<string, unknown> = {
    token_ids: [1, 2, 3],
    priority: -5,
    sampling_params: {
      max_tokens: 2,
      extra_args: { kv_transfer_params: STOLEN_KV, agentic_context: { a: 1 } },
    },
  };
  assert.equal(ownRequestFields(body, rule, ["agentic_context"]), true);
  assert.deepEqual(body, {
    token_ids: [1, 2, 3],
    sampling_params: { max_tokens: 2, extra_args: { agentic_context: { a: 1 } } },
  });
  const only: Record<string, unknown> = { sampling_params: { extra_args: { ec_transfer_params: {} } } };
  ownRequestFields(only, rule, ["ec_transfer_params"]);
  assert.deepEqual(only, { sampling_params: {} });
  const clean: Record<string, unknown> = { sampling_params: { max_tokens: 2, extra_args: null } };
  assert.equal(ownRequestFields(clean, rule, []), false, "nothing to cut, nothing changed");
});
