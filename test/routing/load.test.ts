// The load signal between scrapes (src/routing/load.ts) and least-load's order on it.
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
} from "../../src/routing/index.js";
import { eng } from "../helpers/routing.js";

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

test("least-load sends a session's next turn back where an answer just ended, not where a first token just came", () => {
  const p = createPolicy("least-load");
  // a: 3 requests decoding, one of which has just had its first token; b: 3 requests, quiet
  const a = eng("a");
  const b = eng("b");
  for (const e of [a, b]) for (let i = 0; i < 3; i++) noteSent(e, 0);
  for (let i = 0; i < 3; i++) noteFirstToken(b, 100);
  for (let i = 0; i < 2; i++) noteFirstToken(a, 100);
  noteFirstToken(a, 990);
  // an engine that has just begun an answer holds nothing the next prompt needs: equal load, so the
  // tie goes round-robin's way (seq 1: b)
  const tie = decide(p, req(1), { engines: [a, b], now: 1000 });
  assert.equal(tie.kind === "picked" && tie.engine.id, "b", "a first token is no reason to send there");
  // c: more requests on it, but an answer on it ended 10 ms ago and nothing was sent there since
  const c = eng("c");
  for (let i = 0; i < 5; i++) noteSent(c, 0);
  for (let i = 0; i < 5; i++) noteFirstToken(c, 100);
  noteDone(c, true, 990);
  const back = decide(p, req(0), { engines: [a, b, c], now: 1000 });
  assert.equal(
    back.kind === "picked" && back.engine.id,
    "c",
    "the answer's session goes back to its context",
  );
  // d's answer ended earlier than c's: the sessions send in the order they were answered
  const d = eng("d");
  for (let i = 0; i < 5; i++) noteSent(d, 0);
  for (let i = 0; i < 5; i++) noteFirstToken(d, 100);
  noteDone(d, true, 980);
  const first = decide(p, req(2), { engines: [a, b, c, d], now: 1000 });
  assert.equal(first.kind === "picked" && first.engine.id, "d", "the earliest end first");
  // once the router has sent d a request after that end, d's end has had its turn
  noteSent(d, 1000);
  noteFirstToken(d, 1001);
  const next = decide(p, req(2), { engines: [a, b, c, d], now: 1002 });
  assert.equal(next.kind === "picked" && next.engine.id, "c", "an end followed by a send counts no more");
  // an end a second old is no longer waiting for its session's next turn
  const late = decide(p, req(1), { engines: [b, c], now: 1990 });
  assert.equal(late.kind === "picked" && late.engine.id, "b", "then by requests on it");
});

test("least-load in a router group goes by load alone: an end there may have been followed by another router's send", () => {
  const p = createPolicy("least-load");
  const a = eng("a");
  const b = eng("b");
  for (let i = 0; i < 3; i++) noteSent(a, 0);
  for (let i = 0; i < 3; i++) noteFirstToken(a, 100);
  noteDone(a, true, 990); // a: 2 requests, one just ended
  noteSent(b, 0);
  noteFirstToken(b, 100); // b: 1 request
  for (const e of [a, b]) e.peerAwaitingFirstToken = 0; // the group's counts are in the views
  const d = decide(p, req(0), { engines: [a, b], now: 1000 });
  assert.equal(d.kind === "picked" && d.engine.id, "b");
});

test("least-load: when every engine has a prompt awaiting, the fewest awaiting, then the fewest requests", () => {
  const p = createPolicy("least-load");
  const a = eng("a");
  const b = eng("b");
  const c = eng("c");
  for (let i = 0; i < 2; i++) noteSent(a, 0);
  for (let i = 0; i < 2; i++) noteFirstToken(a, 0);
  noteSent(a, 100); // a: 3 requests, 1 awaiting
  noteSent(b, 900); // b: 1 request, 1 awaiting
  for (let i = 0; i < 2; i++) noteSent(c, 950); // c: 2 awaiting
  const d = decide(p, req(0), { engines: [a, b, c], now: 1000 });
  assert.equal(d.kind === "picked" && d.engine.id, "b");
});
