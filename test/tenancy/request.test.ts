// TenantRequest: usage found in relayed bytes however they are split, the router's own usage event
// stripped and nothing else, the declared maximum charged when no usage arrives, finish exactly once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { hashKey } from "../../src/tenancy/keys.js";
import { findUsage, TenantRequest } from "../../src/tenancy/request.js";
import { TenancyState } from "../../src/tenancy/state.js";

function setup(strip: boolean, stream = true) {
  const state = new TenancyState({
    tenants: { t: { limits: { completionTokensPerMinute: 1000, maxConcurrent: 1 } } },
    keys: [{ hash: hashKey("k"), tenant: "t" }],
  });
  const seen: Array<[string, string, number]> = [];
  const sink = {
    finished: (t: string, s: number) => seen.push(["finished", t, s]),
    tokens: (t: string, k: string, n: number) => seen.push([k, t, n]),
  };
  return {
    state,
    seen,
    make: async () => {
      const a = await state.admit(state.tenant("t")!, 10);
      return new TenantRequest(state, a, sink, {
        promptEstimate: 10,
        maxCompletion: 90,
        stream,
        stripUsageEvent: strip,
      });
    },
  };
}

const ev = (o: unknown) => `data: ${JSON.stringify(o)}\n\n`;
const CONTENT = ev({ id: "c", choices: [{ index: 0, delta: { content: "hi" } }], usage: null });
const USAGE = ev({
  id: "c",
  choices: [],
  usage: { prompt_tokens: 12, total_tokens: 15, completion_tokens: 3 },
});
const DONE = "data: [DONE]\n\n";

function feed(tr: TenantRequest, text: string, cuts: number[]): string {
  const b = Buffer.from(text);
  let out = "";
  let at = 0;
  for (const c of [...cuts, b.length]) {
    out += tr.onBody(b.subarray(at, c), true).toString();
    at = c;
  }
  return out + tr.flush().toString();
}

test("SSE: the usage event is stripped (split anywhere) and recorded; content passes untouched", async () => {
  const whole = CONTENT + CONTENT + USAGE + DONE;
  const usageAt = (CONTENT + CONTENT).length;
  for (const cuts of [
    [],
    [5],
    [usageAt + 3],
    [usageAt + 20, usageAt + 40],
    [...Array(whole.length - 1).keys()].map((i) => i + 1),
  ]) {
    const { state, seen, make } = setup(true);
    const tr = await make();
    const out = feed(tr, whole, cuts);
    assert.equal(out, CONTENT + CONTENT + DONE, `cuts ${cuts.length}`);
    tr.finish(200);
    tr.finish(200);
    assert.deepEqual(seen, [
      ["prompt", "t", 12],
      ["completion", "t", 3],
      ["finished", "t", 200],
    ]);
    assert.equal(state.localInFlight("t"), 0);
  }
});

test("SSE: a client that asked keeps its usage event; continuous usage on content events is never stripped", async () => {
  const { seen, make } = setup(false);
  const tr = await make();
  const whole = CONTENT + USAGE + DONE;
  const split = whole.indexOf('"usage":{') + 3;
  assert.equal(feed(tr, whole, [7, split]), whole, "relayed as it came, the usage key split across chunks");
  tr.finish(200);
  assert.deepEqual(seen[1], ["completion", "t", 3]);
  const s2 = setup(true);
  const tr2 = await s2.make();
  const cont = ev({
    choices: [{ index: 0, delta: { content: "x" } }],
    usage: { prompt_tokens: 1, completion_tokens: 1 },
  });
  assert.equal(feed(tr2, cont + DONE, []), cont + DONE);
});

test("no usage (client gone, stream cut, engine gives none): the prompt estimate and the declared maximum", async () => {
  for (const status of [499, 200, 504]) {
    const { seen, make } = setup(true);
    const tr = await make();
    feed(tr, CONTENT + CONTENT + CONTENT, []);
    tr.finish(status);
    assert.deepEqual(seen, [
      ["prompt", "t", 10],
      ["completion", "t", 90],
      ["finished", "t", status],
    ]);
  }
  // refused by the engine (4xx), or never sent to one: nothing was generated
  for (const [status, reached] of [
    [400, true],
    [502, true],
    [499, false],
  ] as const) {
    const { seen, make } = setup(false, false);
    const tr = await make();
    tr.finish(status, reached);
    assert.deepEqual(seen, [
      ["prompt", "t", 10],
      ["finished", "t", status],
    ]);
  }
});

test("JSON: usage read from the tail, across a chunk boundary; raw bytes inside strings never match", async () => {
  const { seen, make } = setup(false, false);
  const tr = await make();
  const body = JSON.stringify({
    choices: [{ message: { content: 'a "usage":{"prompt_tokens":999} b' + "x".repeat(20_000) } }],
    usage: {
      prompt_tokens: 21,
      total_tokens: 30,
      completion_tokens: 9,
      prompt_tokens_details: { cached_tokens: 0 },
    },
  });
  const b = Buffer.from(body);
  const k = body.lastIndexOf('"usage"');
  for (const part of [b.subarray(0, k + 4), b.subarray(k + 4)]) assert.equal(tr.onBody(part, false), part);
  tr.finish(200);
  assert.deepEqual(seen.slice(0, 2), [
    ["prompt", "t", 21],
    ["completion", "t", 9],
  ]);
  assert.equal(findUsage(Buffer.from('{"content":"\\"usage\\":{\\"prompt_tokens\\":5}"}')), undefined);
});
