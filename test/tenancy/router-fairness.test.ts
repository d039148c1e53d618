// Fair queuing through the live router, checked by the ORDER in which it admits waiting requests, which
// no amount of load on the machine can change: one engine with room for one request at a time, held
// busy while tenant A floods the queue and tenant B queues behind it; then the engine answers at once
// and records which tenant each admitted request came from. Weighted fair queuing lets B's requests in
// ahead of A's backlog by weight and keeps each tenant's own requests in order; A's flood beyond its
// per-tenant bound is refused, B never is. A control run with both keys mapped to one tenant (what a
// FIFO does) admits B only after all of A, so the test can fail. The quantitative claim (B's TTFT p99
// under a 10× flood within 1.5× of its baseline) is checked in virtual time in fair-queue.test.ts and
// measured through the live router by bench/tenancy/fairness.ts (`npm run bench -- tenancy/fairness`).
import { test } from "node:test";
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { hashKey } from "../../src/tenancy/keys.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";

const MODEL = "fake/m";
const KEY_A = "sk-fair-a-000000000000";
const KEY_B = "sk-fair-b-000000000000";

/** An engine whose generation requests wait for `open()`; `seen` lists each one's tag as it arrives. */
async function gatedEngine() {
  const seen: string[] = [];
  let open!: () => void;
  const opened = new Promise<void>((r) => (open = r));
  const answer = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
    res.end(text);
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      const path = (req.url ?? "/").split("?")[0];
      if (req.method !== "POST") {
        if (path === "/metrics") return void res.writeHead(200, { "content-type": "text/plain" }).end("");
        if (path !== "/v1/models") return answer(res, 200, {});
        return answer(res, 200, {
          object: "list",
          data: [{ id: MODEL, object: "model", max_model_len: 8192 }],
        });
      }
      const body = JSON.parse(Buffer.concat(chunks).toString("utf8")) as { prompt: string };
      seen.push(body.prompt);
      void opened.then(() =>
        answer(res, 200, {
          id: `cmpl-${seen.length}`,
          object: "text_completion",
          model: MODEL,
          choices: [{ index: 0, text: "ok", finish_reason: "length" }],
          usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 },
        }),
      );
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const close = () => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return { url, seen, open, close };
}

/**
 * One run: A's held request takes the engine's only slot; A then sends `aCount` requests and B `bCount`,
 * each queued (or refused) before the next is sent; then the engine is let go. Returns the tags in the
 * order the engine received them after the held one, and every request's status.
 */
async function run(o: {
  sameTenant: boolean;
  weightB: number;
  perTenant: number;
  aCount: number;
  bCount: number;
}) {
  const eng = await gatedEngine();
  const r = await routerFor([eng.url], {
    admission: { maxInFlightPerEngine: 1 },
    metrics: { access: "open" },
    tenancy: {
      tenants: { a: { weight: 1 }, b: { weight: o.weightB } },
      keys: [
        { hash: hashKey(KEY_A), tenant: "a" },
        { hash: hashKey(KEY_B), tenant: o.sameTenant ? "a" : "b" },
      ],
      // the timeout is a hang guard: nothing here waits for it
      queue: { size: 64, perTenant: o.perTenant, timeout: "60s" },
    },
  });
  const statuses = new Map<string, number>();
  const send = (tag: string, key: string) =>
    post(
      `${r.url}/v1/completions`,
      { model: MODEL, prompt: tag, max_tokens: 1 },
      { authorization: `Bearer ${key}` },
    ).then(async (res) => {
      statuses.set(tag, res.status);
      await res.arrayBuffer();
    });
  const pending: Promise<void>[] = [];
  try {
    pending.push(send("held", KEY_A));
    await waitUntil(() => eng.seen.length === 1, 30_000, "the held request at the engine");
    // one at a time, so that each tenant's requests enter the queue in the order sent
    for (const [tenant, key, n] of [
      ["a", KEY_A, o.aCount],
      ["b", KEY_B, o.bCount],
    ] as const) {
      for (let i = 0; i < n; i++) {
        const before = r.router.queue.depth + statuses.size;
        pending.push(send(`${tenant}${i}`, key));
        await waitUntil(
          () => r.router.queue.depth + statuses.size > before,
          30_000,
          `${tenant}${i} queued or refused`,
        );
      }
    }
    eng.open();
    await Promise.all(pending);
    const metrics = await (await fetch(`${r.url}/metrics`)).text();
    return { order: eng.seen.slice(1), statuses, metrics };
  } finally {
    await r.close(1000);
    await eng.close();
  }
}

const tenantsOf = (order: string[]) => order.map((t) => t[0]).join("");
const ofTenant = (order: string[], t: string) => order.filter((x) => x.startsWith(t));
const range = (t: string, n: number) => Array.from({ length: n }, (_, i) => `${t}${i}`);

test("fair queuing: a flooding tenant's backlog is interleaved with the steady tenant's requests by weight, in each tenant's order", async (t) => {
  // A floods 16 requests against a per-tenant bound of 12; B (weight 3) queues 6 behind them
  const fair = await run({ sameTenant: false, weightB: 3, perTenant: 12, aCount: 16, bCount: 6 });
  const seq = tenantsOf(fair.order);
  assert.equal(fair.order.length, 12 + 6, seq);
  // weight 3 : 1 — B's six are admitted within the first eight, ahead of A's backlog of twelve
  assert.equal(ofTenant(fair.order.slice(0, 8), "b").length, 6, `admission order ${seq}`);
  assert.deepEqual(ofTenant(fair.order, "b"), range("b", 6), "B's requests in the order sent");
  assert.deepEqual(ofTenant(fair.order, "a"), range("a", 12), "A's requests in the order sent");
  // A's flood beyond its bound is refused at once; B is never refused
  range("a", 16).forEach((tag, i) => assert.equal(fair.statuses.get(tag), i < 12 ? 200 : 429, tag));
  for (const tag of range("b", 6)) assert.equal(fair.statuses.get(tag), 200, tag);
  assert.match(fair.metrics, /switchyard_tenant_queue_wait_seconds_count\{tenant="b"\} 6\b/);

  // equal weights: the two tenants alternate while both have requests waiting
  const even = await run({ sameTenant: false, weightB: 1, perTenant: 12, aCount: 8, bCount: 4 });
  const evenSeq = tenantsOf(even.order);
  assert.equal(ofTenant(even.order.slice(0, 8), "b").length, 4, `admission order ${evenSeq}`);
  assert.doesNotMatch(evenSeq.slice(0, 8), /aaa|bb/, `admission order ${evenSeq}`);

  // the control: both keys in one tenant is a FIFO, where B waits behind all of A's backlog
  const fifo = await run({ sameTenant: true, weightB: 3, perTenant: 32, aCount: 12, bCount: 6 });
  assert.equal(tenantsOf(fifo.order), "a".repeat(12) + "b".repeat(6), "FIFO admits in arrival order");
  t.diagnostic(`admission order: weights 1:3 ${seq}; 1:1 ${evenSeq}; one tenant ${tenantsOf(fifo.order)}`);
});
