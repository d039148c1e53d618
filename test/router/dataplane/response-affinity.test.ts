// Response affinity through a live router: vLLM keeps a stored response in the memory of the engine
// that made it, so the router remembers which engine that was (from the JSON answer or the stream's
// `response.created` event) and sends `GET /v1/responses/{id}`, its cancel, and follow-ups naming it
// as `previous_response_id` there; an id whose engine is gone, or that no engine can be chosen for,
// gets vLLM's own 404.
import { test } from "node:test";
import assert from "node:assert/strict";
import v8 from "node:v8";
import vm from "node:vm";
import { ResponseAffinity, ResponseIdScan } from "../../../src/router/dataplane/response-affinity.js";
import { startFakeVllm, type FakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { freePorts } from "../../../bench/support/cli.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "fake/model-a";

const notFound = (id: string) => ({
  error: {
    message: `Response with id '${id}' not found.`,
    type: "invalid_request_error",
    param: "response_id",
    code: 404,
  },
});

/** The id of a Responses answer, JSON or event stream. */
async function created(url: string, stream: boolean, extra: Record<string, unknown> = {}): Promise<string> {
  const res = await post(`${url}/v1/responses`, { model: MODEL, input: "hi", stream, ...extra });
  assert.equal(res.status, 200);
  const text = await res.text();
  if (!stream) return (JSON.parse(text) as { id: string }).id;
  const m = /"id":"(resp_[^"]+)"/.exec(text);
  assert.ok(m, text);
  return m[1]!;
}

const owner = (engines: FakeVllm[], id: string) => engines.find((e) => e.stored.has(id))!;

test("the id is read off a JSON answer or an event stream, split anywhere, within the answer's first bytes", () => {
  const body = Buffer.from(
    'event: response.created\ndata: {"type":"response.created","response":{"id":"resp_abc123","output":[{"id":"msg_1"}]}}\n\n',
  );
  for (let cut = 1; cut < body.length; cut += 7) {
    const scan = new ResponseIdScan();
    const first = scan.feed(body.subarray(0, cut));
    const id = first ?? scan.feed(body.subarray(cut));
    assert.equal(id, "resp_abc123", `cut at ${cut}`);
  }
  const none = new ResponseIdScan();
  let r: string | null | undefined;
  for (let i = 0; i < 100 && r === undefined; i++) r = none.feed(Buffer.alloc(1024, 0x20));
  assert.equal(r, null, "gives up past its window");
});

test("ids read off answers hold none of the answers' bytes: 1,000 answers of 32 KB leave the heap a few MB larger", () => {
  v8.setFlagsFromString("--expose-gc");
  const gc = vm.runInNewContext("gc") as () => void;
  const a = new ResponseAffinity(10_000);
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let i = 0; i < 1_000; i++) {
    const answer = Buffer.from(
      `{"id":"resp_${String(i).padStart(24, "0")}","output":"${"x".repeat(32_000)}"}`,
    );
    a.remember(new ResponseIdScan().feed(answer)!, "e1", "m");
  }
  gc();
  const grew = (process.memoryUsage().heapUsed - before) / 2 ** 20;
  // kept as slices of the text scanned, the ids held all 32 MB of it
  assert.ok(grew < 8, `the heap grew ${grew.toFixed(1)} MB`);
  assert.equal(a.size, 1_000);
});

test("the map keeps at most its cap, forgetting the least recently used, and counts what it drops", () => {
  const a = new ResponseAffinity(2);
  a.remember("r1", "e1", "m");
  a.remember("r2", "e2", "m");
  a.home("r1");
  a.remember("r3", "e3", "m");
  assert.equal(a.size, 2);
  assert.equal(a.home("r2"), undefined);
  assert.equal(a.home("r1")?.engine, "e1");
  assert.equal(a.evictions, 1);
  // a group member's links are learned but not sent on
  a.sharing = true;
  a.apply([["r9", "e9", "m"]]);
  assert.equal(a.home("r9")?.engine, "e9");
  assert.deepEqual(a.take(), []);
  a.remember("r10", "e1", "m");
  assert.deepEqual(a.take(), [["r10", "e1", "m"]]);
});

test("two engines: GET, cancel and previous_response_id reach the engine that stored the response, 4 of 4", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin" },
  );
  try {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await created(router.url, i % 2 === 1));
    // round-robin spread them: affinity, not luck, has to bring the follow-ups home
    assert.ok(engines.every((e) => e.stored.size > 0));
    for (const id of ids) {
      const got = await fetch(`${router.url}/v1/responses/${id}`);
      assert.equal(got.status, 200, id);
      assert.equal(
        ((await got.json()) as { engine: string }).engine,
        owner(engines, id) === engines[0] ? "a" : "b",
      );
      const cancel = await fetch(`${router.url}/v1/responses/${id}/cancel`, { method: "POST" });
      assert.equal(cancel.status, 200, id);
      await cancel.arrayBuffer();
    }
    for (const id of ids) {
      const next = await created(router.url, false, { previous_response_id: id });
      assert.equal(owner(engines, next), owner(engines, id), `follow-up of ${id}`);
    }
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, /switchyard_response_affinity_ids 8/);
    assert.match(
      metrics,
      /switchyard_other_requests_total\{route="\/v1\/responses\/\{id\}",status="200"\} 4/,
    );
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("the storing engine gone, or an id no engine can be chosen for: vLLM's own 404, never another engine's answer", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b"), await startFakeVllm("c")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin", health: { maxEjectionPercent: 100 } },
  );
  try {
    const id = await created(router.url, false);
    const home = owner(engines, id);
    const others = engines.filter((e) => e !== home);
    const seen = others.map((e) => e.seen.length);
    await home.close();
    // at once (the engine may still be in rotation: the connection fails) and once it is ejected
    for (let round = 0; round < 2; round++) {
      for (const res of [
        await fetch(`${router.url}/v1/responses/${id}`),
        await post(`${router.url}/v1/responses`, { model: MODEL, input: "more", previous_response_id: id }),
      ]) {
        assert.equal(res.status, 404);
        assert.deepEqual(await res.json(), notFound(id));
      }
      if (round === 0)
        await waitUntil(
          () => router.router.registry.snapshot().some((v) => v.id === home.url && !v.healthy),
          5000,
          "the engine ejected",
        );
    }
    assert.deepEqual(
      others.map((e) => e.seen.length),
      seen,
      "no other engine was asked",
    );
    const unknown = await fetch(`${router.url}/v1/responses/resp_never_seen`);
    assert.equal(unknown.status, 404);
    assert.deepEqual(await unknown.json(), notFound("resp_never_seen"));
  } finally {
    await router.close();
    for (const e of engines) await e.close().catch(() => {});
  }
});

test("several engines: an id the router never saw is looked up on the engines and remembered", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin" },
  );
  try {
    // stored behind the router's back (before it restarted, or by a replica that has not reported)
    const id = await created(engines[1]!.url, false);
    for (let i = 0; i < 4; i++) {
      const got = await fetch(`${router.url}/v1/responses/${id}`);
      assert.equal(got.status, 200);
      assert.equal(((await got.json()) as { engine: string }).engine, "b");
    }
    // asked once, then remembered
    const asked = engines.map(
      (e) => e.seen.filter((r) => r.method === "GET" && !r.headers["x-request-id"]).length,
    );
    assert.deepEqual(asked, [1, 1]);
    const next = await created(router.url, false, { previous_response_id: id });
    assert.ok(engines[1]!.stored.has(next));
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("one engine: an id the router never saw is forwarded, and the engine answers for it", async () => {
  const engine = await startFakeVllm("a");
  const router = await routerFor([engine.url]);
  try {
    // stored behind the router's back (say, before it restarted)
    const direct = await created(engine.url, false);
    const got = await fetch(`${router.url}/v1/responses/${direct}`);
    assert.equal(got.status, 200);
    await got.arrayBuffer();
    const missing = await fetch(`${router.url}/v1/responses/resp_nowhere`);
    assert.equal(missing.status, 404);
    assert.deepEqual(await missing.json(), notFound("resp_nowhere"));
    assert.equal(engine.seen.at(-1)!.path, "/v1/responses/resp_nowhere", "the engine's own 404");
  } finally {
    await router.close();
    await engine.close();
  }
});

test("replicas (peers:): an id one replica learned reaches the other with its report, so no engine is asked", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const [pa, pb] = await freePorts(2);
  const peers = (own: number, other: number, id: string) => ({
    bind: `tcp://127.0.0.1:${own}`,
    endpoints: [`tcp://127.0.0.1:${other}`],
    interval: 50,
    expireAfter: 600,
    id,
  });
  const urls = engines.map((e) => e.url);
  const a = await routerFor(urls, { policy: "round-robin", peers: peers(pa!, pb!, "a") });
  const b = await routerFor(urls, { policy: "round-robin", peers: peers(pb!, pa!, "b") });
  try {
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await created(a.url, i % 2 === 1));
    // ZMQ drops what a replica sends before the other's subscription is up: later reports carry
    // only later ids, so the test makes ids until b has heard some of them
    await waitUntil(
      async () => {
        if (ids.some((id) => b.router.affinity.home(id))) return true;
        ids.push(await created(a.url, false));
        return false;
      },
      10_000,
      "b to hear a's ids",
    );
    const heard = ids.filter((id) => b.router.affinity.home(id));
    for (const id of heard) {
      const got = await fetch(`${b.url}/v1/responses/${id}`);
      assert.equal(got.status, 200);
      assert.equal(
        ((await got.json()) as { engine: string }).engine,
        owner(engines, id) === engines[0] ? "a" : "b",
      );
    }
    const lookups = engines.flatMap((e) =>
      e.seen.filter((r) => r.method === "GET" && !r.headers["x-request-id"]),
    );
    assert.deepEqual(lookups, [], "b knew where they were");
  } finally {
    await a.close(0);
    await b.close(0);
    for (const e of engines) await e.close();
  }
});
