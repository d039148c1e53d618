// A request only goes forward: once a router has started, nothing a request does calls back into its
// assembly (src/router/assembly.ts). Every function stored on the assembly is wrapped to count the
// calls made while a request is in flight, and the assembly frozen, so a room that kept a way back
// (a closure over the assembly, a late-bound field) shows up here.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startFakeEngine } from "../../bench/support/fakes/fake-engine.js";
import { writePeftAdapter } from "../../bench/support/peft.js";
import { post, routerFor, waitUntil } from "../helpers/router.js";
import { loraSim, LORA_SIM_MODEL } from "../helpers/lora-sim.js";
import type { RouterAssembly } from "../../src/router/assembly.js";
import type { Router } from "../../src/router/edge/server.js";

/** The assembly's functions wrapped to record calls made while `inFlight > 0`; the object frozen. */
function freezeAssembly(router: Router): { inFlight: number; calls: string[] } {
  const rooms = (router as unknown as { rooms: RouterAssembly }).rooms;
  const watch = { inFlight: 0, calls: [] as string[] };
  const names = new Set<string>(Object.getOwnPropertyNames(rooms));
  for (let p = Object.getPrototypeOf(rooms); p && p !== Object.prototype; p = Object.getPrototypeOf(p))
    for (const n of Object.getOwnPropertyNames(p)) if (n !== "constructor") names.add(n);
  for (const name of names) {
    const d =
      Object.getOwnPropertyDescriptor(rooms, name) ??
      Object.getOwnPropertyDescriptor(Object.getPrototypeOf(rooms), name);
    if (!d) continue;
    const note = (what: string): void => {
      if (watch.inFlight > 0) watch.calls.push(what);
    };
    if (typeof d.value === "function") {
      const fn = d.value as (...a: unknown[]) => unknown;
      Object.defineProperty(rooms, name, {
        value: (...a: unknown[]) => (note(name), fn.apply(rooms, a)),
        enumerable: false,
      });
    } else if (d.get) {
      const get = d.get;
      Object.defineProperty(rooms, name, { get: () => (note(`get ${name}`), get.call(rooms)) });
    }
  }
  Object.freeze(rooms);
  return watch;
}

async function during<T>(watch: { inFlight: number }, f: () => Promise<T>): Promise<T> {
  watch.inFlight++;
  try {
    return await f();
  } finally {
    watch.inFlight--;
  }
}

test("a chat, a stream and a failover run without calling back into the frozen assembly", async () => {
  const a = await startFakeEngine({ models: ["fake/m"] });
  const b = await startFakeEngine({ models: ["fake/m"] });
  const router = await routerFor([a.url, b.url], {
    policy: "round-robin",
    retry: { maxAttempts: 3, budgetRatio: 1 },
  });
  try {
    await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 5000, "both engines");
    const watch = freezeAssembly(router.router);
    await during(watch, async () => {
      const chat = await post(`${router.url}/v1/chat/completions`, {
        model: "fake/m",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(chat.status, 200, await chat.clone().text());
      await chat.text();
      const stream = await post(`${router.url}/v1/completions`, {
        model: "fake/m",
        prompt: "x",
        stream: true,
      });
      assert.equal(stream.status, 200);
      assert.match(await stream.text(), /\[DONE\]/);
      // one engine refuses: each request fails over to the other
      a.mode = "503";
      for (let i = 0; i < 2; i++) {
        const r = await post(`${router.url}/v1/completions`, { model: "fake/m", prompt: "y" });
        assert.equal(r.status, 200, await r.clone().text());
        await r.text();
      }
    });
    const m = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(m, /switchyard_retries_total\{/, "a failover was made");
    assert.deepEqual(watch.calls, []);
  } finally {
    await router.close();
    await a.close();
    await b.close();
  }
});

test("a LoRA request that loads its adapter runs without calling back into the frozen assembly", async () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-forward-only-"));
  writePeftAdapter(join(dir, "a1"), { rank: 8, hidden: 64, layers: 2, baseModel: LORA_SIM_MODEL });
  const sim = await loraSim();
  const router = await routerFor([sim.url], { lora: { dir, adapters: [], maxCpuLoras: 2 } });
  try {
    const watch = freezeAssembly(router.router);
    await during(watch, async () => {
      const r = await post(`${router.url}/v1/completions`, { model: "a1", prompt: "hello", max_tokens: 4 });
      assert.equal(r.status, 200, await r.clone().text());
      await r.text();
    });
    assert.equal(router.router.registry.adapters!.stats.loads, 1);
    assert.deepEqual(watch.calls, []);
  } finally {
    await router.close();
    await sim.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
