// The load signal between scrapes (src/routing/cost/engine-load.ts) and least-load's order on it.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  busyOf,
  createPolicy,
  decide,
  noteDone,
  noteFirstToken,
  noteScraped,
  noteSent,
  OTHERS_HALF_LIFE_MS,
  waitingOf,
  type RequestView,
} from "../../../src/routing/index.js";
import { eng } from "../../helpers/routing.js";

const req = (seq: number, over: Partial<RequestView> = {}): RequestView => ({ model: "m", seq, ...over });

test("an engine that drained since its last scrape is not counted busy", () => {
  const e = eng("a");
  for (let i = 0; i < 8; i++) noteSent(e, 0);
  e.running = 8;
  noteScraped(e, 0);
  for (let i = 0; i < 6; i++) noteDone(e, false, 0);
  assert.equal(busyOf(e, 10), 2, "the router's own count: the scrape's 8 are gone");
});

test("other clients' requests seen at a scrape count, and age out with the scrape", () => {
  const e = eng("a");
  for (let i = 0; i < 4; i++) noteSent(e, 0);
  e.running = 10;
  noteScraped(e, 1000);
  assert.equal(busyOf(e, 1000), 10, "4 of ours + 6 of others");
  assert.equal(busyOf(e, 1000 + OTHERS_HALF_LIFE_MS), 7, "others halve per half-life");
  noteSent(e, 1000);
  assert.equal(busyOf(e, 1000), 11, "what the router sent since is added exactly");
});

test("an engine that was queueing: what the router sent since queues behind it, completions let it in", () => {
  const e = eng("a");
  for (let i = 0; i < 11; i++) noteSent(e, 0);
  e.running = 8;
  e.waiting = 3;
  noteScraped(e, 0);
  assert.equal(waitingOf(e, 0), 3);
  noteSent(e, 0);
  noteSent(e, 0);
  assert.equal(waitingOf(e, 0), 5);
  for (let i = 0; i < 4; i++) noteDone(e, true, 0);
  assert.equal(waitingOf(e, 0), 1);
  // an engine that was not queueing has an unknown limit: the router's count carries the load
  const f = eng("b", { running: 3 });
  noteScraped(f, 0);
  assert.equal(waitingOf(f, 0), 0);
});

test("a view without a scrape time keeps the rule max(in-flight, running + waiting)", () => {
  assert.equal(busyOf(eng("a", { inFlight: 3, running: 5, waiting: 1 }), 0), 6);
  assert.equal(busyOf(eng("a", { inFlight: 9, running: 5, waiting: 1 }), 0), 9);
});

test("least-load sends a new prompt where no prompt awaits its first token, then by requests on it", () => {
  const p = createPolicy("least-load");
  const a = eng("a");
  const b = eng("b");
  for (let i = 0; i < 5; i++) noteSent(a, 0);
  for (let i = 0; i < 5; i++) noteFirstToken(a, 0); // a: 5 decoding
  noteSent(b, 0); // b: 1 awaiting its first token
  const pick = decide(p, req(0), { engines: [a, b], now: 10 });
  assert.equal(pick.kind === "picked" && pick.engine.id, "a", "5 decoding beat 1 prefilling");
  const c = eng("c");
  for (let i = 0; i < 2; i++) noteSent(c, 0);
  for (let i = 0; i < 2; i++) noteFirstToken(c, 0);
  const pick2 = decide(p, req(0), { engines: [a, c], now: 10 });
  assert.equal(pick2.kind === "picked" && pick2.engine.id, "c", "fewer requests on it");
});

test("least-load: when every engine has a prompt awaiting, the one sent to longest ago goes first", () => {
  const p = createPolicy("least-load");
  const a = eng("a");
  const b = eng("b");
  noteSent(a, 0);
  noteSent(a, 0);
  noteFirstToken(a, 0);
  noteFirstToken(a, 0);
  noteSent(a, 100); // a: 3 requests, its prompt sent at 100 ms, nearer its first token
  noteSent(b, 900); // b: 1 request, but its prompt is fresh
  const d = decide(p, req(0), { engines: [a, b], now: 1000 });
  assert.equal(d.kind === "picked" && d.engine.id, "a");
});

/** an engine with `n` requests decoding, the last sent at `sentAt` ms */
function decoding(id: string, n: number, sentAt: number) {
  const e = eng(id);
  for (let i = 0; i < n; i++) noteSent(e, sentAt);
  for (let i = 0; i < n; i++) noteFirstToken(e, sentAt + 1);
  return e;
}

test("least-load sends the next prompt to the engine sent to longest ago, not to the one whose request just ended", () => {
  const p = createPolicy("least-load");
  // a client at its in-flight cap: a's request ended just now, and the next goes out at once
  const a = decoding("a", 16, 900);
  noteDone(a, true, 1000);
  const b = decoding("b", 15, 200);
  const c = decoding("c", 15, 500);
  const d = decide(p, req(0), { engines: [a, b, c], now: 1000 });
  assert.equal(
    d.kind === "picked" && d.engine.id,
    "b",
    "within a few requests of the least busy: oldest send",
  );
  // far busier than the least busy, an old send does not draw it
  const idle = decoding("idle", 2, 990);
  const far = decide(p, req(0), { engines: [idle, b], now: 1000 });
  assert.equal(far.kind === "picked" && far.engine.id, "idle");
});

test("least-load sends a request naming a session where a request just ended, the engine holding its context", () => {
  const p = createPolicy("least-load");
  const a = decoding("a", 16, 900);
  noteDone(a, true, 1000);
  const b = decoding("b", 15, 200);
  const named = decide(p, req(0, { sessionKey: "user-1" }), { engines: [a, b], now: 1000 });
  assert.equal(named.kind === "picked" && named.engine.id, "a");
  // once a request was sent there since the end, that end is followed
  noteSent(a, 1001);
  noteFirstToken(a, 1002);
  const next = decide(p, req(1, { sessionKey: "user-2" }), { engines: [a, b], now: 1003 });
  assert.equal(next.kind === "picked" && next.engine.id, "b");
});

test("least-load in a router group ranks by requests on the engines alone (its own sends are part of the group's)", () => {
  const p = createPolicy("least-load");
  const a = decoding("a", 15, 900);
  const b = decoding("b", 16, 200);
  for (const e of [a, b]) e.peerAwaitingFirstToken = 0;
  const d = decide(p, req(1), { engines: [a, b], now: 1000 });
  assert.equal(d.kind === "picked" && d.engine.id, "a");
});
