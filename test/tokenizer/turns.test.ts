// The line sliced tokenising waits in between its slices: the work that began first goes first, and
// no turn of the event loop runs more than one waiting slice, so a socket's news (an engine's first
// token, a router worker's claim answer) never waits behind every prompt being tokenised at once.
import { test } from "node:test";
import assert from "node:assert/strict";
import { WorkCancelled, nextTurn, waitingSlices } from "../../src/eventloop/turns.js";
import { tokenCountFloorAsync, tokenizerFor } from "../../src/tokenizer/index.js";

/** counts the event loop's turns (one setImmediate each) until stopped */
function turnCounter(): { readonly turn: number; stop(): void } {
  let turn = 0;
  let ticking = true;
  const tick = () => {
    turn++;
    if (ticking) setImmediate(tick);
  };
  setImmediate(tick);
  return {
    get turn() {
      return turn;
    },
    stop: () => void (ticking = false),
  };
}

test("waiting slices go in the order their work began, one per turn of the event loop", async () => {
  const counter = turnCounter();
  const order: number[] = [];
  const turns: number[] = [];
  await Promise.all(
    [30, 10, 20, 10].map((since) =>
      nextTurn(since).then(() => {
        order.push(since);
        turns.push(counter.turn);
      }),
    ),
  );
  counter.stop();
  assert.deepEqual(order, [10, 10, 20, 30]);
  assert.equal(new Set(turns).size, 4, `each waiter had a turn of its own: ${turns.join(",")}`);
  assert.equal(waitingSlices(), 0);
});

test("prompts tokenised at once in slices come out with the ids a single encode gives", async () => {
  const tk = tokenizerFor("llama3");
  const words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta"];
  const texts = [0, 1, 2].map((k) =>
    Array.from({ length: 12_000 }, (_, i) => words[(i * (k + 3)) % words.length]).join(" "),
  );
  const sliced = await Promise.all(texts.map((t) => tk.encodeAsync(t)));
  texts.forEach((t, i) => assert.deepEqual(sliced[i], tk.encode(t)));
  assert.equal(waitingSlices(), 0);
});

test("long prompts tokenised at once finish in the order they began, the longest first if it came first", async () => {
  const tk = tokenizerFor("llama3");
  const words = ["north", "south", "east", "west", "up", "down", "left"];
  const text = (n: number, k: number) =>
    Array.from({ length: n }, (_, i) => words[(i * (k + 2) + k) % words.length]).join(" ");
  // ~200K characters (several slices, within what work may encode as the oldest), then two of ~40K
  // (two slices each): taking a slice of each per turn, the short ones would finish first
  const texts = [text(36_000, 0), text(7_000, 1), text(7_000, 2)];
  const finished: number[] = [];
  await Promise.all(texts.map((t, i) => tk.encodeAsync(t).then(() => finished.push(i))));
  assert.deepEqual(finished, [0, 1, 2]);
});

test("sliced counting stops at its next turn once what it is for is cancelled, and leaves the line empty", async () => {
  const tk = tokenizerFor("llama3");
  const words = ["red", "green", "blue", "cyan", "magenta", "yellow", "black"];
  const text = Array.from({ length: 30_000 }, (_, i) => words[(i * 5) % words.length]).join(" ");
  const owner = { cancelled: false };
  const counting = tk.countAsync(text, true, Infinity, undefined, owner);
  // a floor on a text several slices long, for the same owner
  const floor = tokenCountFloorAsync("word ".repeat(600_000), undefined, owner);
  owner.cancelled = true;
  await assert.rejects(counting, WorkCancelled);
  await assert.rejects(floor, WorkCancelled);
  assert.equal(waitingSlices(), 0);
  // not cancelled: the same count runs to its end
  const whole = await tk.countAsync(text, true, Infinity, undefined, { cancelled: false });
  assert.equal(whole.count, tk.encode(text).length);
});

test("a waiter whose work is cancelled is rejected at its turn and takes no turn from the others", async () => {
  const counter = turnCounter();
  const gone = { cancelled: false };
  const first = nextTurn(1, gone);
  const second = nextTurn(2).then(() => counter.turn);
  gone.cancelled = true;
  await assert.rejects(first, WorkCancelled);
  const at = await second;
  counter.stop();
  // the live waiter ran in the turn the cancelled one would have had
  assert.ok(at <= 1, `turn ${at}`);
  assert.equal(waitingSlices(), 0);
});
