// The sim serves LoRA as vLLM 0.32 does: --enable-lora and its limits, runtime loading of PEFT folders
// with VLLM_ALLOW_RUNTIME_LORA_UPDATING and vLLM's answers, /v1/models entries with parent and root,
// the unknown adapter's 404, and vllm:lora_requests_info from the scheduler's own state.
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { writePeftAdapter } from "../../bench/support/peft.js";
import { getText, postJson, startTestSim, tokenIds } from "./helpers.js";
import type { Json } from "../helpers/json.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";
const RUNTIME = { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" };

function adapters(names: string[], rank = 8): { dir: string; path: (n: string) => string } {
  const dir = mkdtempSync(join(tmpdir(), "sy-lora-"));
  for (const n of names) writePeftAdapter(join(dir, n), { rank, hidden: 64, layers: 2, baseModel: MODEL });
  return { dir, path: (n) => join(dir, n) };
}

/** the current series of vllm:lora_requests_info: the one with the largest value (vLLM keeps the others) */
function loraInfo(text: string): { maxLora: string; running: string[]; waiting: string[] } | null {
  let best: { v: number; labels: string } | null = null;
  for (const line of text.split("\n")) {
    if (!line.startsWith("vllm:lora_requests_info{")) continue;
    const v = Number(line.slice(line.lastIndexOf(" ") + 1));
    if (!best || v >= best.v) best = { v, labels: line.slice(line.indexOf("{") + 1, line.lastIndexOf("}")) };
  }
  if (!best) return null;
  const get = (k: string) => /"([^"]*)"/.exec(best!.labels.slice(best!.labels.indexOf(`${k}=`)))![1]!;
  const list = (k: string) => (get(k) ? get(k).split(",").sort() : []);
  return {
    maxLora: get("max_lora"),
    running: list("running_lora_adapters"),
    waiting: list("waiting_lora_adapters"),
  };
}

test("the sim loads and unloads PEFT folders at run time with vLLM's answers and lists them with parent and root", async () => {
  const a = adapters(["a1", "a2"]);
  const big = adapters(["wide"], 16);
  const sim = await startTestSim(
    MODEL,
    [
      "--enable-lora",
      "--max-loras",
      "2",
      "--max-cpu-loras",
      "3",
      "--max-lora-rank",
      "8",
      "--time-scale",
      "0.01",
    ],
    { env: RUNTIME },
  );
  try {
    const load = await postJson(`${sim.url}/v1/load_lora_adapter`, {
      lora_name: "a1",
      lora_path: a.path("a1"),
    });
    assert.equal(load.status, 200);
    assert.equal(load.text, "Success: LoRA adapter 'a1' added successfully.");
    const dup = await postJson(`${sim.url}/v1/load_lora_adapter`, {
      lora_name: "a1",
      lora_path: a.path("a2"),
    });
    assert.equal(dup.status, 400);
    assert.equal(dup.json.error.type, "InvalidUserInput");
    assert.equal(
      dup.json.error.message,
      "The lora adapter 'a1' has already been loaded. If you want to load the adapter in place, set 'load_inplace' to True.",
    );
    const missing = await postJson(`${sim.url}/v1/load_lora_adapter`, {
      lora_name: "x",
      lora_path: "/nope/x",
    });
    assert.equal(missing.status, 404);
    assert.equal(missing.json.error.type, "NotFoundError");
    assert.equal(missing.json.error.message, "Loading lora x failed: No adapter found for /nope/x");
    const tooWide = await postJson(`${sim.url}/v1/load_lora_adapter`, {
      lora_name: "wide",
      lora_path: big.path("wide"),
    });
    assert.equal(tooWide.status, 500);
    assert.equal(tooWide.json.error.message, "LoRA rank 16 is greater than max_lora_rank 8.");

    const models = JSON.parse((await getText(`${sim.url}/v1/models`)).text) as Json;
    const card = models.data.find((m: Json) => m.id === "a1");
    assert.equal(card.parent, MODEL);
    assert.equal(card.root, a.path("a1"));
    assert.equal(card.max_model_len, null);
    assert.equal(models.data.length, 2);

    const ok = await postJson(`${sim.url}/v1/completions`, {
      model: "a1",
      prompt: tokenIds(20, 1),
      max_tokens: 2,
    });
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.model, "a1");
    const unknown = await postJson(`${sim.url}/v1/completions`, { model: "a9", prompt: "hi", max_tokens: 1 });
    assert.equal(unknown.status, 404);
    assert.deepEqual(unknown.json.error, {
      message: `The model \`a9\` does not exist. Valid aliases: ${MODEL}.`,
      type: "NotFoundError",
      param: "model",
      code: 404,
    });

    const un = await postJson(`${sim.url}/v1/unload_lora_adapter`, { lora_name: "a1" });
    assert.equal(un.status, 200);
    assert.equal(un.text, "Success: LoRA adapter 'a1' removed successfully.");
    const again = await postJson(`${sim.url}/v1/unload_lora_adapter`, { lora_name: "a1" });
    assert.equal(again.status, 404);
    assert.equal(again.json.error.message, "The lora adapter 'a1' cannot be found.");
  } finally {
    await sim.close();
    rmSync(a.dir, { recursive: true, force: true });
    rmSync(big.dir, { recursive: true, force: true });
  }
});

test("without VLLM_ALLOW_RUNTIME_LORA_UPDATING the load routes are not there, as in vLLM", async () => {
  const a = adapters(["a1"]);
  const sim = await startTestSim(MODEL, ["--enable-lora", "--lora-modules", `s1=${a.path("a1")}`]);
  try {
    const r = await postJson(`${sim.url}/v1/load_lora_adapter`, { lora_name: "a1", lora_path: a.path("a1") });
    assert.equal(r.status, 404);
    assert.deepEqual(r.json, { detail: "Not Found" });
    // the static adapter is served all the same
    const models = JSON.parse((await getText(`${sim.url}/v1/models`)).text) as Json;
    assert.ok(models.data.some((m: Json) => m.id === "s1" && m.root === a.path("a1")));
  } finally {
    await sim.close();
    rmSync(a.dir, { recursive: true, force: true });
  }
});

test("with more hot adapters than --max-loras the sim runs max-loras at once and lora_requests_info shows the others waiting", async () => {
  const names = ["h1", "h2", "h3", "h4"];
  const a = adapters(names);
  const sim = await startTestSim(
    MODEL,
    [
      "--enable-lora",
      "--max-loras",
      "2",
      "--max-cpu-loras",
      "4",
      "--max-lora-rank",
      "8",
      "--time-scale",
      "0.2",
    ],
    { env: RUNTIME },
  );
  try {
    for (const n of names)
      assert.equal(
        (await postJson(`${sim.url}/v1/load_lora_adapter`, { lora_name: n, lora_path: a.path(n) })).status,
        200,
      );
    const answers = names.map((n, i) =>
      postJson(`${sim.url}/v1/completions`, {
        model: n,
        prompt: tokenIds(32, 10 + i),
        max_tokens: 60,
        ignore_eos: true,
      }),
    );
    let seen: ReturnType<typeof loraInfo> = null;
    let maxRunning = 0;
    // scrape while the four run; the loop ends when a scrape shows adapters waiting (or all are done)
    for (let i = 0; i < 400; i++) {
      const info = loraInfo((await getText(`${sim.url}/metrics`)).text);
      if (info) maxRunning = Math.max(maxRunning, info.running.length);
      if (info && info.running.length === 2 && info.waiting.length > 0) {
        seen = info;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.ok(seen, "a scrape showed two adapters running and others waiting");
    assert.equal(seen.maxLora, "2");
    for (const w of seen.waiting) assert.ok(!seen.running.includes(w));
    for (const r of await Promise.all(answers)) assert.equal(r.status, 200);
    assert.ok(maxRunning <= 2);
  } finally {
    await sim.close();
    rmSync(a.dir, { recursive: true, force: true });
  }
});
