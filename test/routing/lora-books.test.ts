// The adapter books the LoRA policies read and their callers keep: a cold load's seconds, and which
// adapter a load into a full host cache evicts (the least used idle one).
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  adapterUseAt,
  ADAPTER_USE_HALF_LIFE_MS,
  evictionFor,
  evictionVictim,
  noteAdapterUse,
} from "../../src/routing/lora-books/books.js";
import { coldLoadSeconds } from "../../src/routing/lora-books/load-time.js";
import type { AdapterUse } from "../../src/routing/policy/views.js";
import { loraReq, loraView } from "../helpers/lora-views.js";

test("a load into a full host cache evicts its oldest adapter with nothing in flight, never one in use", () => {
  const v = loraView({ loaded: ["old", "busy", "mid", "new"], inFlight: new Map([["old", 1]]) });
  assert.equal(evictionFor(v, "a1"), "busy");
  assert.equal(evictionFor(v, "mid"), null, "a loaded adapter evicts nothing");
  assert.equal(evictionFor(loraView({ loaded: ["x"] }), "a1"), null, "room left");
  assert.equal(coldLoadSeconds(v, loraReq("mid").lora!), 0);
  assert.ok(Math.abs(coldLoadSeconds(v, loraReq("a1").lora!) - (0.05 + 50e6 / 1e9 + 50e6 / 25e9)) < 1e-12);
});

test("a full host cache evicts its least used idle adapter, not its oldest: a run of rare ones keeps the popular", () => {
  const uses = new Map<string, AdapterUse>();
  // "popular" was loaded first and used often; "rare1" and "rare2" once each, later
  for (let i = 0; i < 5; i++) noteAdapterUse(uses, "popular", i * 1000);
  noteAdapterUse(uses, "rare1", 6000);
  noteAdapterUse(uses, "rare2", 7000);
  noteAdapterUse(uses, "busy", 7000);
  const v = loraView({
    loaded: ["popular", "rare1", "rare2", "busy"],
    uses,
    inFlight: new Map([["busy", 1]]),
  });
  assert.equal(evictionFor(v, "new", 8000), "rare1", "least used; the older of two equals");
  assert.ok(adapterUseAt(v, "popular", 8000) > adapterUseAt(v, "rare2", 8000));
  // a use decays by half each half-life: an adapter unused for a long while goes before a fresh one
  assert.equal(ADAPTER_USE_HALF_LIFE_MS, 60_000);
  const old = new Map<string, AdapterUse>([
    ["popular", { n: 5, at: 0 }],
    ["rare1", { n: 1, at: 4 * 60_000 }],
  ]);
  const w = loraView({ loaded: ["popular", "rare1", "x", "y"], uses: old });
  assert.equal(
    evictionVictim(w, 4 * 60_000, (n) => n === "x" || n === "y"),
    "popular",
  );
  // no use counts kept: the oldest idle one, as before
  assert.equal(evictionFor(loraView({ loaded: ["a", "b", "c", "d"] }), "new", 0), "a");
});
