// A router worker sends a load-aware pick's request at once and holds what the engine answers until the
// group's primary has confirmed the pick (src/router/cluster/claims.ts). These tests give a lone router's
// data plane a worker's claims (src/router/cluster/worker-claims.ts) over a stand-in for the primary's
// word (a ClaimArbiter the test answers), so each order of events (the engine answers before the word,
// the word refuses the pick, the request ends first) is met on purpose.
import { test } from "node:test";
import assert from "node:assert/strict";
import type { EngineRecord } from "../../../src/router/engines/engine-record.js";
import type { ClaimArbiter, ClaimHolder } from "../../../src/router/cluster/claims.js";
import { WorkerSlotClaims } from "../../../src/router/cluster/worker-claims.js";
import { startFakeEngine, type FakeEngine } from "../../../bench/support/fakes/fake-engine.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

/** Every pick is a claim; the test says the word. */
class HeldWord implements ClaimArbiter {
  private seq = 0;
  readonly claims: { id: number; engine: string; holder: ClaimHolder }[] = [];
  readonly withdrawn: number[] = [];
  constructor(private readonly takeSlot: (e: EngineRecord) => void) {}
  take(e: EngineRecord, holder: ClaimHolder): void {
    this.takeSlot(e);
    holder.claim = ++this.seq;
    this.claims.push({ id: this.seq, engine: e.url, holder });
  }
  withdraw(id: number): void {
    this.withdrawn.push(id);
  }
}

async function setup(
  t: { after(fn: () => Promise<void>): void },
  firstTokenDelayMs = 0,
  policy = "round-robin",
  roles: ("prefill" | "decode" | "both")[] = ["both", "both"],
) {
  const engines: FakeEngine[] = [];
  for (const _ of roles) engines.push(await startFakeEngine({ models: ["fake/m"], firstTokenDelayMs }));
  const router = await routerFor(
    engines.map((e, i) => ({ url: e.url, role: roles[i]! })),
    { policy },
  );
  const reg = router.router.registry;
  await waitUntil(() => reg.snapshot().length === roles.length, 5000, "every engine in rotation");
  const word = new HeldWord((e) => reg.takeSlot(e));
  const loop = router.router.attemptLoop;
  loop.useClaims((host) => new WorkerSlotClaims(word, reg, host));
  t.after(async () => {
    loop.useClaims(undefined);
    await router.close();
    for (const e of engines) await e.close();
  });
  return { engines, router, reg, word };
}

/** a few turns of this process's event loop (the router runs in it): what was going to happen has */
const turns = () => new Promise((r) => setTimeout(r, 50));

test("an engine's answer to a pick awaiting the group's word reaches the client only once the pick stands", async (t) => {
  const { engines, router, word } = await setup(t);
  let answered = false;
  const res = post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 3 }).then(
    (r) => ((answered = true), r),
  );
  await waitUntil(() => word.claims.length === 1, 5000, "the pick");
  const engine = engines.find((e) => e.url === word.claims[0]!.engine)!;
  // the engine has answered in full; the router holds it
  await waitUntil(() => engine.hits === 1 && engine.active === 0, 5000, "the engine's answer");
  await turns();
  assert.equal(answered, false, "nothing reaches the client before the word");
  word.claims[0]!.holder.stands();
  const r = await res;
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, "tok tok tok");
  assert.equal(engine.aborted, 0);
  // what the word added to the answer's time is measured
  const page = await (await fetch(`${router.url}/metrics`)).text();
  assert.match(page, /^switchyard_routing_claim_held_seconds_count\{model="fake\/m"\} 1$/m);
});

test("a refused pick is taken back and decided again: the client gets one whole answer, from the second engine", async (t) => {
  // the first engine answers only after the test is over (its wait ends when its request is cancelled),
  // so it is still working when the pick is refused however busy the machine; the second answers at once
  const { engines, router, reg, word } = await setup(t, 60_000, "least-load");
  const res = post(
    `${router.url}/v1/chat/completions`,
    { model: "fake/m", messages: [{ role: "user", content: "x" }], max_tokens: 3, stream: true },
    { "x-switchyard-debug": "1" },
  );
  await waitUntil(() => word.claims.length === 1, 5000, "the pick");
  const first = engines.find((e) => e.url === word.claims[0]!.engine)!;
  for (const e of engines) if (e !== first) e.opts.firstTokenDelayMs = 0;
  await waitUntil(() => first.active === 1, 5000, "the request on its engine");
  // what the primary's refusal means: another worker's request went to the same engine meanwhile
  const other = reg.engines.get(first.url)!.view;
  other.inFlight++;
  assert.equal(word.claims[0]!.holder.takeBack(), true);
  await waitUntil(() => word.claims.length === 2, 5000, "the pick made again");
  other.inFlight--;
  assert.deepEqual(word.withdrawn, [1], "the refused claim is let go of with its slot");
  const second = word.claims[1]!;
  assert.notEqual(second.engine, first.url, "least-load counts the other worker's request");
  second.holder.stands();
  const r = await res;
  assert.equal(r.status, 200);
  assert.match(r.headers.get("x-switchyard-route") ?? "", new RegExp(second.engine.replace(/\W/g, "\\$&")));
  const text = await r.text();
  const contents = [...text.matchAll(/"content":"([^"]*)"/g)].map((m) => m[1]).join("");
  assert.equal(contents, "tok tok tok", "one answer, not two");
  assert.equal(text.match(/\[DONE\]/g)?.length, 1);
  await waitUntil(() => first.active === 0, 5000, "the first engine let go");
  assert.equal(first.aborted, 1, "the first engine's request was cancelled");
  const retries = (await router.router.metrics.retries.get()).values.reduce((a, v) => a + v.value, 0);
  assert.equal(retries, 0, "taken back is not a retry");
  for (const v of reg.snapshot()) assert.equal(v.inFlight, 0, `${v.id}: no slot left taken`);
});

test("a refused pick whose engine has already answered in full stands: that work is not thrown away and sent again", async (t) => {
  const { engines, router, reg, word } = await setup(t, 0, "least-load");
  const res = post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 3 });
  await waitUntil(() => word.claims.length === 1, 5000, "the pick");
  const engine = engines.find((e) => e.url === word.claims[0]!.engine)!;
  await waitUntil(() => engine.hits === 1 && engine.active === 0, 5000, "the engine's whole answer");
  await turns();
  assert.equal(word.claims[0]!.holder.takeBack(), false, "not taken back");
  // what Claims does with a pick that could not be taken back
  word.claims[0]!.holder.stands();
  const r = await res;
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, "tok tok tok");
  assert.equal(word.claims.length, 1, "not decided again");
  assert.equal(
    engines.reduce((a, e) => a + e.hits, 0),
    1,
    "sent once",
  );
  assert.equal(engine.aborted, 0);
  for (const v of reg.snapshot()) assert.equal(v.inFlight, 0, `${v.id}: no slot left taken`);
});

test("a refused pick decided again onto the same engine keeps its request there: nothing cancelled or sent twice", async (t) => {
  const { engines, router, reg, word } = await setup(t, 0, "least-load");
  // tokens far apart: its answer has begun and not ended when the pick is refused (one answered in
  // full stands: the test above)
  for (const e of engines) e.opts.tokenDelayMs = 500;
  const res = post(`${router.url}/v1/completions`, {
    model: "fake/m",
    prompt: "x",
    max_tokens: 3,
    stream: true,
  });
  await waitUntil(() => word.claims.length === 1, 5000, "the pick");
  const first = engines.find((e) => e.url === word.claims[0]!.engine)!;
  await waitUntil(() => first.hits === 1, 5000, "the request on its engine");
  // the other engine has a prompt awaiting its first token when the request is decided again
  const other = reg.engines.get(engines.find((e) => e !== first)!.url)!.view;
  other.inFlight++;
  other.awaitingFirstToken = (other.awaitingFirstToken ?? 0) + 1;
  assert.equal(word.claims[0]!.holder.takeBack(), true);
  other.inFlight--;
  other.awaitingFirstToken--;
  assert.equal(word.claims.length, 2, "decided again at once");
  assert.equal(word.claims[1]!.engine, first.url);
  assert.deepEqual(word.withdrawn, [1]);
  word.claims[1]!.holder.stands();
  const r = await res;
  assert.equal(r.status, 200);
  const text = await r.text();
  assert.equal([...text.matchAll(/"text":"([^"]*)"/g)].map((m) => m[1]).join(""), "tok tok tok");
  assert.equal(text.match(/\[DONE\]/g)?.length, 1);
  assert.equal(first.hits, 1, "sent once");
  assert.equal(first.aborted, 0);
  for (const v of reg.snapshot()) assert.equal(v.inFlight, 0, `${v.id}: no slot left taken`);
});

test("a request that ends before the word lets go of its claim, and the late word changes nothing", async (t) => {
  // the engine is still working when the client leaves, however busy the machine
  const { engines, router, reg, word } = await setup(t, 60_000);
  const ac = new AbortController();
  const res = fetch(`${router.url}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "fake/m", prompt: "x", max_tokens: 3, stream: true }),
    signal: ac.signal,
  }).catch(() => undefined);
  await waitUntil(() => word.claims.length === 1, 5000, "the pick");
  const engine = engines.find((e) => e.url === word.claims[0]!.engine)!;
  await waitUntil(() => engine.active === 1, 5000, "the request on its engine");
  ac.abort();
  await res;
  await waitUntil(() => word.withdrawn.length === 1, 5000, "the claim let go of");
  word.claims[0]!.holder.stands();
  assert.equal(word.claims[0]!.holder.takeBack(), false, "nothing left to take back");
  await waitUntil(() => engine.active === 0, 5000, "the engine let go");
  for (const v of reg.snapshot()) assert.equal(v.inFlight, 0, `${v.id}: no slot left taken`);
});

test("P/D: the prefill step's pick waits for the word before its request goes out, and a refused one is decided again", async (t) => {
  const { engines, router, reg, word } = await setup(t, 0, "least-load", ["prefill", "prefill", "decode"]);
  const [p1, p2, decode] = engines as [FakeEngine, FakeEngine, FakeEngine];
  const res = post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "x", max_tokens: 3 });
  await waitUntil(() => word.claims.length === 1, 5000, "the prefill pick");
  await turns();
  assert.equal(p1.hits + p2.hits, 0, "nothing sent before the word");
  assert.equal(word.claims[0]!.holder.takeBack(), true);
  await waitUntil(() => word.claims.length === 2, 5000, "the prefill pick made again");
  assert.deepEqual(word.withdrawn, [1]);
  assert.notEqual(word.claims[1]!.engine, decode.url, "a prefill engine again");
  word.claims[1]!.holder.stands();
  await waitUntil(() => word.claims.length === 3, 5000, "the decode pick");
  assert.equal(p1.hits + p2.hits, 1, "one prefill request");
  assert.equal(word.claims[2]!.engine, decode.url);
  word.claims[2]!.holder.stands();
  const r = await res;
  assert.equal(r.status, 200);
  assert.equal(((await r.json()) as { choices: { text: string }[] }).choices[0]!.text, "tok tok tok");
  for (const v of reg.snapshot()) assert.equal(v.inFlight, 0, `${v.id}: no slot left taken`);
});
