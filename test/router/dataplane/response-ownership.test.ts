// Stored responses belong to the tenant that made them: with API keys, another tenant holding a
// `resp_…` id gets the same 404 an id nobody made gets — on GET, on cancel and as
// `previous_response_id` — whichever replica it asks, and an id the router has no entry for is a 404
// rather than a question to the engines. Live routers, recording engines, real ZMQ between replicas.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResponseAffinity } from "../../../src/router/dataplane/response-affinity.js";
import { parseReport, signReport } from "../../../src/router/cluster/peers.js";
import { hashKey } from "../../../src/tenancy/keys.js";
import { freePorts } from "../../../bench/support/cli.js";
import { startFakeVllm, type FakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";
import type { RunningRouter } from "../../../src/router/index.js";

const MODEL = "fake/model-a";
const KEY_A = "sk-owner-tenant-a-00000000";
const KEY_B = "sk-owner-tenant-b-00000000";
const A = { authorization: `Bearer ${KEY_A}` };
const B = { authorization: `Bearer ${KEY_B}` };

const TENANCY = {
  tenants: { a: {}, b: {} },
  keys: [
    { hash: hashKey(KEY_A), tenant: "a" },
    { hash: hashKey(KEY_B), tenant: "b" },
  ],
};

const notFound = (id: string) => ({
  error: {
    message: `Response with id '${id}' not found.`,
    type: "invalid_request_error",
    param: "response_id",
    code: 404,
  },
});

async function created(url: string, auth: Record<string, string>, stream = false): Promise<string> {
  const res = await post(`${url}/v1/responses`, { model: MODEL, input: "hi", stream }, auth);
  assert.equal(res.status, 200);
  const m = /"id":"(resp_[^"]+)"/.exec(await res.text());
  assert.ok(m);
  return m[1]!;
}

/** GET, cancel and a follow-up of `id` with `auth`: their statuses and bodies. */
async function reach(url: string, id: string, auth: Record<string, string>) {
  const get = await fetch(`${url}/v1/responses/${id}`, { headers: auth });
  const cancel = await fetch(`${url}/v1/responses/${id}/cancel`, { method: "POST", headers: auth });
  const next = await post(
    `${url}/v1/responses`,
    { model: MODEL, input: "more", previous_response_id: id },
    auth,
  );
  return Promise.all(
    [get, cancel, next].map(async (r) => ({ status: r.status, body: (await r.json()) as unknown })),
  );
}

/** Requests that reached an engine for a stored response or a follow-up of it. */
const asked = (engines: FakeVllm[], id: string) =>
  engines.flatMap((e) => e.seen).filter((r) => r.path.includes(id) || r.body.includes(id)).length;

test("tenancy on: tenant B's stored response is a 404 to tenant A on GET, cancel and previous_response_id, and reaches B's engine for B", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const r = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin", tenancy: TENANCY },
  );
  try {
    for (const stream of [false, true]) {
      const id = await created(r.url, B, stream);
      for (const got of await reach(r.url, id, A)) {
        assert.equal(got.status, 404);
        assert.deepEqual(got.body, notFound(id), "the answer an id nobody made gets");
      }
      assert.equal(asked(engines, id), 0, "no engine was asked for another tenant's response");
      const own = await reach(r.url, id, B);
      assert.deepEqual(
        own.map((g) => g.status),
        [200, 200, 200],
      );
    }
  } finally {
    await r.close();
    for (const e of engines) await e.close();
  }
});

test("tenancy on: an id the router has no entry for is a 404 without asking any engine, even where an engine holds it", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  for (const n of [1, 2]) {
    const r = await routerFor(
      engines.slice(0, n).map((e) => e.url),
      { policy: "round-robin", tenancy: TENANCY },
    );
    try {
      // stored behind the router's back (before it restarted, say): nothing says whose it is
      const id = await created(engines[0]!.url, {});
      const before = engines.map((e) => e.seen.length);
      for (const got of await reach(r.url, id, B)) {
        assert.equal(got.status, 404, `${n} engine(s)`);
        assert.deepEqual(got.body, notFound(id));
      }
      assert.deepEqual(
        engines.map((e) => e.seen.length),
        before,
        "no engine asked",
      );
    } finally {
      await r.close();
    }
  }
  for (const e of engines) await e.close();
});

test("an entry keeps its owner, and a replica's link carries it: an owner's id is only its own, an unowned one nobody's with tenancy on", () => {
  const a = new ResponseAffinity(8);
  a.sharing = true;
  a.remember("resp_1", "http://e1", MODEL, undefined, "b");
  a.remember("resp_2", "http://e1", MODEL, "s-1", "b");
  a.remember("resp_3", "http://e1", MODEL, "s-2");
  const links = a.take();
  assert.deepEqual(links, [
    ["resp_1", "http://e1", MODEL, "", "b"],
    ["resp_2", "http://e1", MODEL, "s-1", "b"],
    ["resp_3", "http://e1", MODEL, "s-2"],
  ]);
  // through a report and into another replica
  const report = parseReport(
    Buffer.from(JSON.stringify({ v: 1, id: "r", seq: 0, load: [], picks: [], responses: links })),
  );
  const other = new ResponseAffinity(8);
  other.applyFromPeer(report!.responses!, true, true);
  assert.deepEqual(other.home("resp_1"), { engine: "http://e1", model: MODEL, owner: "b" });
  assert.deepEqual(other.home("resp_2"), { engine: "http://e1", model: MODEL, session: "s-1", owner: "b" });
  assert.deepEqual(other.home("resp_3"), { engine: "http://e1", model: MODEL, session: "s-2" });
  // an unsigned report with tenancy on could name anyone the owner of anything: not taken
  const unsigned = new ResponseAffinity(8);
  unsigned.applyFromPeer([["resp_9", "http://e1", MODEL, "", "a"]], false, true);
  assert.equal(unsigned.home("resp_9"), undefined);
  assert.equal(unsigned.unsignedDropped, 1);
  // with tenancy off there are no owners to forge
  unsigned.applyFromPeer([["resp_9", "http://e1", MODEL]], false, false);
  assert.equal(unsigned.home("resp_9")?.engine, "http://e1");
  assert.equal(signReport(Buffer.from("a-secret-of-16-chars"), "x").length, 32);
});

async function replicas(
  urls: string[],
  secrets: [string | undefined, string | undefined],
): Promise<[RunningRouter, RunningRouter]> {
  const [pa, pb] = await freePorts(2);
  const peers = (own: number, other: number, id: string, secret: string | undefined) => ({
    bind: `tcp://127.0.0.1:${own}`,
    endpoints: [`tcp://127.0.0.1:${other}`],
    interval: 50,
    expireAfter: 600,
    id,
    ...(secret ? { secret } : {}),
  });
  const a = await routerFor(urls, {
    policy: "round-robin",
    tenancy: TENANCY,
    peers: peers(pa!, pb!, "a", secrets[0]),
  });
  const b = await routerFor(urls, {
    policy: "round-robin",
    tenancy: TENANCY,
    peers: peers(pb!, pa!, "b", secrets[1]),
  });
  return [a, b];
}

test("replicas with peers.secret: ownership travels with the signed report, so through the second replica A's GET, cancel and previous_response_id of B's response get 404 and B's reach it", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const secret = "replicas-share-this-secret";
  const [a, b] = await replicas(
    engines.map((e) => e.url),
    [secret, secret],
  );
  try {
    const ids: string[] = [];
    // ZMQ drops what a replica sends before the other's subscription is up: ids are made until b has some
    await waitUntil(
      async () => {
        ids.push(await created(a.url, B));
        return ids.some((id) => b.router.affinity.home(id));
      },
      10_000,
      "b to hear a's ids",
    );
    const id = ids.find((i) => b.router.affinity.home(i))!;
    assert.equal(b.router.affinity.home(id)?.owner, "b");
    for (const got of await reach(b.url, id, A)) {
      assert.equal(got.status, 404);
      assert.deepEqual(got.body, notFound(id));
    }
    assert.deepEqual(
      (await reach(b.url, id, B)).map((g) => g.status),
      [200, 200, 200],
      "the owner reaches it through either replica",
    );
  } finally {
    await a.close(0);
    await b.close(0);
    for (const e of engines) await e.close();
  }
});

test("replicas whose secrets differ, or that sign nothing, with tenancy on: no stored response crosses, so the other replica answers 404 even to its owner", async () => {
  const engines = [await startFakeVllm("a")];
  for (const secrets of [
    ["replicas-share-this-secret", "another-secret-entirely"],
    [undefined, undefined],
  ] as Array<[string | undefined, string | undefined]>) {
    const [a, b] = await replicas(
      engines.map((e) => e.url),
      secrets,
    );
    try {
      const ids: string[] = [];
      if (secrets[0] === undefined) {
        // unsigned reports arrive (their load counts) but their links are dropped
        await waitUntil(
          async () => {
            ids.push(await created(a.url, B));
            return b.router.affinity.unsignedDropped > 0;
          },
          10_000,
          "b to have dropped a's unsigned links",
        );
      } else {
        // a report under another secret is dropped whole: twenty report intervals of ids, none heard
        for (let i = 0; i < 20; i++) {
          ids.push(await created(a.url, B));
          await new Promise((res) => setTimeout(res, 50));
        }
      }
      assert.deepEqual(
        ids.filter((id) => b.router.affinity.home(id)),
        [],
      );
      for (const got of await reach(b.url, ids.at(-1)!, B)) assert.equal(got.status, 404);
    } finally {
      await a.close(0);
      await b.close(0);
    }
  }
  for (const e of engines) await e.close();
});

test("a follow-up that overtakes its response's entry waits for it to come from the group, and no longer than it is told", async () => {
  const a = new ResponseAffinity(8);
  const waiting = a.arrival("resp_late", 10_000);
  a.apply([["resp_late", "http://e1", MODEL, "", "b"]]);
  assert.deepEqual(await waiting, { engine: "http://e1", model: MODEL, owner: "b" });
  assert.equal(await a.arrival("resp_never", 20), undefined);
  assert.equal((await a.arrival("resp_late", 20))?.owner, "b", "a known id at once");
});
