// How two answers to the same request are compared, kept apart from the runner so the rules read in one
// place: a vLLM answer and a sim answer differ in text, ids and timing by design, so everything is
// compared — status, headers clients read, every key, every value's type, every value, every SSE event in
// order, /metrics families and labels — and each difference is reported with a path that the declared
// list (test/conformance/declared-differences.json) can name. Plain Node, no dependencies.

/** Headers clients read: the body's type (SDKs and curl -N pick the parser by it), and the request id. */
export const HEADERS = ["content-type", "x-request-id"];

/** Text of a JSON value's type, as the report names it. */
function typeOf(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

/** A path to a glob: `*` one key (or `[]`), `**` anything. */
export function pathRegex(glob) {
  let re = "";
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i];
    if (c === "*" && glob[i + 1] === "*") {
      re += ".*";
      i++;
    } else if (c === "*") re += "[^.]*";
    else re += c.replace(/[\\^$+?.()|[\]{}]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/**
 * Every difference between two JSON values: `shape` (a key on one side only), `type`, `value`, `length`
 * (arrays), each with an index-free path (`$.choices[].message.content`). Objects at `maps` paths have
 * data for keys (completions' top_logprobs, keyed by token text): only their values' shapes count.
 */
export function diffJson(a, b, opts = {}, path = "$", out = []) {
  if (out.length >= 200) return out;
  const [ta, tb] = [typeOf(a), typeOf(b)];
  if (ta !== tb) {
    add(out, { kind: "type", path, a: ta, b: tb });
    return out;
  }
  if (ta === "array") {
    if (a.length !== b.length) add(out, { kind: "length", path: `${path}[]`, a: a.length, b: b.length });
    const n = Math.min(a.length, b.length);
    for (let i = 0; i < n; i++) diffJson(a[i], b[i], opts, `${path}[]`, out);
    // the longer side's extra elements must still look like the shorter side's first
    if (n > 0) {
      for (let i = n; i < a.length; i++) addAll(out, diffShape(a[i], b[0], opts, `${path}[]`));
      for (let i = n; i < b.length; i++) addAll(out, diffShape(a[0], b[i], opts, `${path}[]`));
    }
    return out;
  }
  if (ta === "object") {
    if ((opts.maps ?? []).some((m) => pathRegex(m).test(path))) {
      const [va, vb] = [Object.values(a)[0], Object.values(b)[0]];
      if (va !== undefined && vb !== undefined) addAll(out, diffShape(va, vb, opts, `${path}.*`));
      return out;
    }
    for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
      const p = `${path}.${k}`;
      if (!(k in b)) add(out, { kind: "shape", path: p, a: typeOf(a[k]), b: "absent" });
      else if (!(k in a)) add(out, { kind: "shape", path: p, a: "absent", b: typeOf(b[k]) });
      else diffJson(a[k], b[k], opts, p, out);
    }
    return out;
  }
  if (a !== b) add(out, { kind: "value", path, a, b });
  return out;
}

/** Differences of structure only (keys and types), for elements that have no counterpart. */
function diffShape(a, b, opts, path) {
  return diffJson(a, b, opts, path, []).filter((d) => d.kind === "shape" || d.kind === "type");
}

/** Adds a difference unless the same kind at the same path is there (arrays repeat it per element). */
function add(out, d) {
  if (!out.some((x) => x.kind === d.kind && x.path === d.path)) out.push(d);
}

function addAll(out, list) {
  for (const d of list) add(out, d);
}

/** One entry per kind and path. */
function dedupe(list) {
  const seen = new Set();
  return list.filter((d) => {
    const k = `${d.kind} ${d.path}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** An SSE body as events: `{event, data}` with data parsed as JSON where it is JSON. */
export function parseSse(text) {
  const events = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    if (!block.trim()) continue;
    let event = "";
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    const raw = data.join("\n");
    let json;
    try {
      json = JSON.parse(raw);
    } catch {
      json = undefined;
    }
    events.push({ event, data: json === undefined ? raw : json });
  }
  return events;
}

/**
 * An event's kind in the sequence: its SSE event name, the JSON `type` field (Responses and Anthropic
 * events carry one), and whether it is [DONE], a usage chunk, a finish chunk or a delta.
 */
function eventKind(e) {
  const d = e.data;
  if (typeof d === "string") return `${e.event || "data"}:${d === "[DONE]" ? "[DONE]" : "text"}`;
  const parts = [e.event || "data"];
  if (typeof d?.type === "string") parts.push(d.type);
  if (d?.error) parts.push("error");
  const choices = Array.isArray(d?.choices) ? d.choices : undefined;
  if (choices) {
    if (!choices.length) parts.push(d.usage ? "usage" : "empty");
    else if (choices.some((c) => c.finish_reason)) parts.push("finish");
    else if (choices.some((c) => c.delta?.role)) parts.push("role");
    else if (choices.some((c) => c.delta?.tool_calls?.length)) parts.push("tool_calls");
    else parts.push("delta");
  }
  return parts.join(":");
}

/**
 * Events in order, consecutive events of the same kind merged into one run (a run's length is the
 * number of steps, which is generated text, not protocol): the list of kinds and the first and last
 * event of each run for their keys and values.
 */
export function runs(events) {
  const out = [];
  for (const e of events) {
    const k = eventKind(e);
    const last = out.at(-1);
    if (last && last.kind === k) {
      last.n++;
      last.last = e;
    } else out.push({ kind: k, n: 1, first: e, last: e });
  }
  return out;
}

/**
 * An event's lane: the choice it belongs to (one engine step may carry the choices of n > 1 or of a
 * batch in any order, which is scheduling, not protocol), or "-" for events of the whole answer.
 */
function lane(e) {
  const c = e.data?.choices;
  return Array.isArray(c) && c.length === 1 && typeof c[0]?.index === "number" ? `#${c[0].index}` : "-";
}

/**
 * Two SSE bodies: per lane, the sequence of event kinds, then each run's first and last events' JSON.
 * The "-" lane also keeps where each choice's first event falls, so a usage chunk before the deltas
 * still shows.
 */
export function diffSse(ta, tb, opts) {
  const split = (text) => {
    const lanes = new Map();
    for (const e of parseSse(text)) {
      const l = lane(e);
      if (!lanes.has(l)) lanes.set(l, []);
      lanes.get(l).push(e);
    }
    return lanes;
  };
  const [la, lb] = [split(ta), split(tb)];
  const out = [];
  const names = [...new Set([...la.keys(), ...lb.keys()])].sort();
  if (
    names.join(" ") !== [...la.keys()].sort().join(" ") ||
    names.join(" ") !== [...lb.keys()].sort().join(" ")
  )
    out.push({
      kind: "sse",
      path: "sse:lanes",
      a: [...la.keys()].sort().join(" "),
      b: [...lb.keys()].sort().join(" "),
    });
  for (const name of names) {
    const [ra, rb] = [runs(la.get(name) ?? []), runs(lb.get(name) ?? [])];
    const [ka, kb] = [ra.map((r) => r.kind), rb.map((r) => r.kind)];
    if (ka.join(" ") !== kb.join(" ")) {
      // the last tokens in the finish event itself, or in a delta before it, is how steps fell
      const merged = (ks) => ks.filter((k, i) => !(k.endsWith(":delta") && ks[i + 1]?.endsWith(":finish")));
      const chunking = merged(ka).join(" ") === merged(kb).join(" ");
      out.push({
        kind: chunking ? "length" : "sse",
        path: `sse${name === "-" ? "" : name}${chunking ? ":deltas" : ""}`,
        a: ka.join(" "),
        b: kb.join(" "),
      });
      continue;
    }
    for (let i = 0; i < ra.length; i++) {
      // a run's last event only where both runs have more than one (otherwise it is the first again)
      for (const which of ra[i].n > 1 && rb[i].n > 1 ? ["first", "last"] : ["first"]) {
        const [x, y] = [ra[i][which].data, rb[i][which].data];
        if (typeof x === "string" && typeof y === "string") {
          if (x !== y) out.push({ kind: "value", path: `sse:${ra[i].kind}$`, a: x, b: y });
          continue;
        }
        for (const d of diffJson(x, y, opts)) out.push({ ...d, path: `sse:${ra[i].kind}${d.path}` });
      }
    }
  }
  return dedupe(out);
}

/** Prometheus text → family → {type, labels} (label names only; `_bucket`'s `le` and the like fold in). */
export function parseMetrics(text) {
  const fams = new Map();
  const fam = (name) => {
    if (!fams.has(name)) fams.set(name, { type: "untyped", labels: new Set() });
    return fams.get(name);
  };
  for (const line of text.split("\n")) {
    if (line.startsWith("# TYPE ")) {
      const [, , name, type] = line.split(" ");
      fam(name).type = type;
      continue;
    }
    if (!line || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?/.exec(line);
    if (!m) continue;
    let name = m[1];
    for (const suffix of ["_bucket", "_sum", "_count", "_total", "_created"]) {
      const base = name.slice(0, -suffix.length);
      if (name.endsWith(suffix) && fams.has(base)) {
        name = base;
        break;
      }
    }
    const f = fam(name);
    for (const lm of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) f.labels.add(lm[1]);
  }
  return fams;
}

/** /metrics: families of `prefix` on one side only, their types, their label names. */
export function diffMetrics(ta, tb, prefix = "vllm:") {
  const [fa, fb] = [parseMetrics(ta), parseMetrics(tb)];
  const out = [];
  for (const name of [...new Set([...fa.keys(), ...fb.keys()])].filter((n) => n.startsWith(prefix)).sort()) {
    const [x, y] = [fa.get(name), fb.get(name)];
    if (!x || !y) {
      out.push({
        kind: "metric",
        path: `metric:${name}`,
        a: x ? x.type : "absent",
        b: y ? y.type : "absent",
      });
      continue;
    }
    if (x.type !== y.type) out.push({ kind: "metric-type", path: `metric:${name}`, a: x.type, b: y.type });
    for (const l of new Set([...x.labels, ...y.labels])) {
      if (!x.labels.has(l) || !y.labels.has(l))
        out.push({
          kind: "metric-label",
          path: `metric:${name}{${l}}`,
          a: x.labels.has(l),
          b: y.labels.has(l),
        });
    }
  }
  return out;
}

/** Whether a declared entry covers a difference of a case. */
export function declares(entry, c, d) {
  if (entry.kinds && !entry.kinds.includes(d.kind)) return false;
  if (entry.cases && !entry.cases.some((g) => pathRegex(g).test(c.id))) return false;
  if (entry.exceptCases && entry.exceptCases.some((g) => pathRegex(g).test(c.id))) return false;
  if (entry.unlessFlag && c[entry.unlessFlag]) return false;
  return entry.paths.some((g) => pathRegex(g).test(d.path));
}
