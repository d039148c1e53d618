// Migration on real engines (docs/interop.md): 8 greedy streams through a router in front of engines
// A and B, B killed -9 while its streams are under way; every stream must end whole, and the ones that
// moved must go on as the unbroken run on a third engine does (up to a bfloat16 tie: greedy-ties.mjs).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { collectTopTwo, judge, topTwo } from "./greedy-ties.mjs";

const MODEL = "tiny";

/** Reads an SSE stream to the end: the text, the token ids, how many [DONE]. */
export async function stream(base, path, body, headers = {}, onEvent) {
  const res = await fetch(`${base}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify(body),
  });
  const out = {
    status: res.status,
    route: res.headers.get("x-switchyard-route"),
    requestId: res.headers.get("x-request-id"),
    text: "",
    ids: [],
    done: 0,
    errors: [],
    events: 0,
    /** each token's top two candidates [id, logprob, id, logprob], where the request asked for them */
    top2: [],
  };
  const dec = new TextDecoder();
  let buf = "";
  for await (const chunk of res.body) {
    buf += dec.decode(chunk, { stream: true });
    for (let i = buf.indexOf("\n\n"); i >= 0; i = buf.indexOf("\n\n")) {
      const ev = buf.slice(0, i);
      buf = buf.slice(i + 2);
      for (const line of ev.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") {
          out.done++;
          continue;
        }
        const j = JSON.parse(data);
        if (j.error) out.errors.push(j.error.message ?? JSON.stringify(j.error));
        for (const ch of j.choices ?? []) {
          out.text += ch.text ?? ch.delta?.content ?? "";
          if (Array.isArray(ch.token_ids)) out.ids.push(...ch.token_ids);
          collectTopTwo(ch, out.top2);
        }
        out.events++;
        onEvent?.(out);
      }
    }
  }
  return out;
}

export async function migration(h, r, b, c) {
  const N = 8;
  // long enough that B is still generating when a stream has shown 20 tokens: at 1-3 ms a step
  // 160 tokens could all be out before the kill landed, and then nothing migrated
  const MAX = 600;
  const prompts = Array.from(
    { length: N },
    (_, i) => `Stream ${i}: tell a long story about river number ${i * 7 + 3} and its bridges.`,
  );
  // completions and chats in pairs: the router alternates fresh streams between the engines, so B gets both kinds
  const isCompletion = (i) => (i >> 1) % 2 === 0;
  const body = (i) =>
    isCompletion(i)
      ? {
          model: MODEL,
          prompt: prompts[i],
          max_tokens: MAX,
          temperature: 0,
          ignore_eos: true,
          stream: true,
          return_token_ids: true,
        }
      : {
          model: MODEL,
          messages: [{ role: "user", content: prompts[i] }],
          max_tokens: MAX,
          temperature: 0,
          ignore_eos: true,
          stream: true,
          return_token_ids: true,
        };
  const path = (i) => (isCompletion(i) ? "/v1/completions" : "/v1/chat/completions");
  // the unbroken run, on the third engine, all at once as through the router, with each token's top two
  const refBody = (i) => ({ ...body(i), ...topTwo(!isCompletion(i)) });
  const ref = await Promise.all(prompts.map((_, i) => stream(c.url, path(i), refBody(i))));
  // the same once more: the engine reproduces its own run (up to ties), or no stream can be judged
  const again = await Promise.all(prompts.map((_, i) => stream(c.url, path(i), body(i))));
  const control = again.map((x, i) => judge(x.ids, ref[i]));
  const reproduced = control.map((v) => v.same || v.tie);

  // B is killed from its own counters, not from what the client has read: on a busy machine the client
  // reads late (in one run B had sent all 600 tokens of its 4 streams while the client had read 7 to 22
  // of them, so nothing was left to move)
  const countersOfB = async () => {
    const text = await (await fetch(`${b.url}/metrics`)).text();
    return {
      running: metricSum(text, "vllm:num_requests_running"),
      generated: metricSum(text, "vllm:generation_tokens_total"),
    };
  };
  const generated0 = (await countersOfB()).generated;
  let killed = false;
  let streamsEnded = false;
  /** B's counters when it was killed */
  let atKill = null;
  const killer = (async () => {
    const deadline = Date.now() + 120_000;
    while (!streamsEnded && Date.now() < deadline) {
      const now = await countersOfB().catch(() => null);
      // under way (about 10 tokens a stream) and far from done (600 a stream)
      if (now && now.running > 0 && now.generated - generated0 >= 40) {
        killed = true;
        atKill = { running: now.running, generated: now.generated - generated0 };
        h.signal(b.proc, "SIGKILL"); // the API server and its engine core at once, as a lost node
        return;
      }
      await h.sleep(20);
    }
  })();
  const onB = new Set();
  const runs = prompts.map((_, i) =>
    stream(r.url, path(i), body(i), { "x-switchyard-debug": "1" }, (s) => {
      if (s.route?.includes(String(b.port))) onB.add(i);
    }),
  );
  const got = await Promise.all(runs);
  streamsEnded = true;
  await killer;
  const moved = {};
  for (const line of (await (await fetch(`${r.url}/metrics`)).text()).split("\n")) {
    const m = /^switchyard_migrations_total\{(.*)\} (\S+)$/.exec(line);
    const outcome = m && /outcome="([^"]*)"/.exec(m[1])?.[1];
    if (outcome) moved[outcome] = (moved[outcome] ?? 0) + Number(m[2]);
  }
  // which streams moved, and after how many tokens: the router's log, by the x-request-id each answer carried
  const movedAt = await migrationsLogged(h, r.proc.log, got);
  const lines = got.map((g, i) => {
    const v = judge(g.ids, ref[i]);
    return {
      i,
      onB: onB.has(i),
      movedAt: movedAt.get(g.requestId) ?? null,
      done: g.done,
      errors: g.errors.length,
      verdict: v.same ? "same" : v.tie ? `tie at ${v.at}` : v.why,
      agrees: v.same || v.tie,
      // how far it matches the unbroken run
      through: v.same ? g.ids.length : v.at,
      judged: reproduced[i],
      n: g.ids.length,
    };
  });
  writeFileSync(
    join(h.RUN, "migration.json"),
    JSON.stringify({ ref, again, got, onB: [...onB], atKill, lines }, null, 1),
  );
  // every stream must end once without an error; one the engine reproduces must agree up to a tie
  const bad = (l) => l.done !== 1 || l.errors !== 0 || (l.judged && !l.agrees);
  // a migration is proven by a stream that moved and matches the unbroken run well past where it moved
  const PAST = 32;
  const proven = lines.filter((l) => l.movedAt !== null && l.judged && l.through >= l.movedAt + PAST);
  const ties = lines.filter((l) => l.verdict.startsWith("tie"));
  const movedLines = lines.filter((l) => l.movedAt !== null);
  const summary = `B killed: ${killed}${atKill ? ` (it was running ${atKill.running} and had generated ${atKill.generated} tokens)` : ""}; ${onB.size} streams were on B, ${movedLines.length} moved (${movedLines.map((l) => `stream ${l.i} after ${l.movedAt} tokens`).join(", ") || "none"}); [DONE] once ${lines.filter((l) => l.done === 1).length}/${N}; ${lines.filter((l) => l.verdict === "same").length}/${N} identical to the unbroken run's token ids, ${ties.length} parting only at a bfloat16 tie (${ties.map((l) => `stream ${l.i} at token ${l.through}`).join(", ") || "none"}); ${proven.length} moved streams matched ${PAST}+ tokens past the move (${proven.map((l) => `stream ${l.i}: ${l.movedAt} → ${l.through}`).join(", ") || "none"}); router switchyard_migrations_total ${JSON.stringify(moved)}; control: the unbroken run repeated agrees ${reproduced.filter(Boolean).length}/${N}`;
  if (!killed || lines.some(bad) || proven.length === 0)
    throw new Error(
      `${summary}${movedLines.length === 0 ? "; no stream moved" : proven.length === 0 ? "; no moved stream could be judged past its move" : ""}; ${JSON.stringify(lines.filter(bad))}`,
    );
  return summary;
}

/** a Prometheus text's samples of one metric, summed over their labels */
function metricSum(text, name) {
  let n = 0;
  for (const l of text.split("\n"))
    if (l.startsWith(name) && (l[name.length] === " " || l[name.length] === "{"))
      n += Number(l.slice(l.lastIndexOf(" ") + 1));
  return n;
}

/**
 * The router's `stream moving to another engine` lines for these streams' request ids: id → the tokens
 * it had relayed when it moved (its first move). Waits until every stream's access line is in its
 * output (`log()`, what the router has written so far).
 */
async function migrationsLogged(h, log, streams) {
  const ids = new Set(streams.map((s) => s.requestId).filter(Boolean));
  const out = new Map();
  for (let tries = 0; tries < 50; tries++) {
    const logged = new Set();
    out.clear();
    for (const line of log().split("\n")) {
      if (!line.startsWith("{")) continue;
      let j;
      try {
        j = JSON.parse(line);
      } catch {
        continue;
      }
      if (!ids.has(j.requestId)) continue;
      if (j.name === "router.access") logged.add(j.requestId);
      if (j.name === "router.migration" && !out.has(j.requestId)) out.set(j.requestId, j.tokens);
    }
    if (logged.size === ids.size) break;
    await h.sleep(100);
  }
  return out;
}
