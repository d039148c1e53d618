// Migration on real engines (docs/interop.md): 8 greedy streams through a router in front of engines
// A and B, B killed -9 while its streams are under way; every stream must end whole, and the ones that
// moved must go on as the unbroken run on a third engine does (up to a bfloat16 tie: greedy-ties.mjs).
import { writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { Agent } from "undici";
import { collectTopTwo, judge, topTwo } from "./greedy-ties.mjs";

const MODEL = "tiny";

/**
 * Each stream on a connection of its own. vLLM's API server closes a connection idle for 5 s without
 * a Keep-Alive hint, and the suite's streams to an engine start when the previous batch has ended,
 * some of their connections idle about that long: one went out on a connection being closed and
 * failed with "other side closed" before reaching the engine. The check is about the router.
 */
const FRESH = new Agent({ pipelining: 0 });

/** Reads an SSE stream to the end: the text, the token ids, how many [DONE]. */
export async function stream(base, path, body, headers = {}, onEvent) {
  const res = await fetch(`${base}${path}`, {
    dispatcher: FRESH,
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
  // an error answer is one JSON body, not a stream: kept whole (its message says why)
  if (res.status !== 200) {
    out.errors.push(`${res.status}: ${(await res.text()).slice(0, 500)}`);
    return out;
  }
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

export async function migration(h, r, b, c, gate) {
  const N = 8;
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

  const onB = new Set();
  gate.arm();
  const runs = prompts.map((_, i) =>
    stream(r.url, path(i), body(i), { "x-switchyard-debug": "1" }, (s) => {
      if (s.route?.includes(`:${gate.port}`)) onB.add(i);
    }),
  );
  const got = await Promise.all(runs);
  const { killed, events: atKill } = gate.state();
  const moved = {};
  /** the router's retries by reason, for a failure's message */
  const retried = [];
  for (const line of (await (await fetch(`${r.url}/metrics`)).text()).split("\n")) {
    const m = /^switchyard_migrations_total\{(.*)\} (\S+)$/.exec(line);
    const outcome = m && /outcome="([^"]*)"/.exec(m[1])?.[1];
    if (outcome) moved[outcome] = (moved[outcome] ?? 0) + Number(m[2]);
    if (line.startsWith("switchyard_retries_total{"))
      retried.push(line.slice("switchyard_retries_total".length));
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
      ...(g.errors.length ? { error: g.errors[0] } : {}),
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
  const summary = `B killed: ${killed} (after ${atKill} events had reached the router); ${onB.size} streams were on B, ${movedLines.length} moved (${movedLines.map((l) => `stream ${l.i} after ${l.movedAt} tokens`).join(", ") || "none"}); [DONE] once ${lines.filter((l) => l.done === 1).length}/${N}; ${lines.filter((l) => l.verdict === "same").length}/${N} identical to the unbroken run's token ids, ${ties.length} parting only at a bfloat16 tie (${ties.map((l) => `stream ${l.i} at token ${l.through}`).join(", ") || "none"}); ${proven.length} moved streams matched ${PAST}+ tokens past the move (${proven.map((l) => `stream ${l.i}: ${l.movedAt} → ${l.through}`).join(", ") || "none"}); router switchyard_migrations_total ${JSON.stringify(moved)}; control: the unbroken run repeated agrees ${reproduced.filter(Boolean).length}/${N}`;
  if (!killed || lines.some(bad) || proven.length === 0)
    throw new Error(
      `${summary}${movedLines.length === 0 ? "; no stream moved" : proven.length === 0 ? "; no moved stream could be judged past its move" : ""}; ${JSON.stringify(lines.filter(bad))}; router retries ${retried.join(", ") || "none"}`,
    );
  return summary;
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

/** events a stream of B's reaches the router with, in all, before B is killed and cut off */
const GATE_EVENTS = 40;

/**
 * A TCP relay in front of engine B, the router's backend for it, that kills B at an exact point: once
 * armed and GATE_EVENTS SSE events (`data: `) have passed from B towards the router, the rest of that
 * read is held back, B's process group is SIGKILLed, every relayed connection is destroyed and the
 * port closed, as the router finds a node that died mid-stream. Killing B from what the client had
 * read (or from B's counters) missed on a busy machine: B's API server, starved of a core, sent each
 * stream's 600 tokens within 0.1 s of the first, so B had finished before it was killed (or was never
 * killed) and nothing moved (5 tries of 9).
 */
export async function gateFor(h, b) {
  const sockets = new Set();
  let events = 0;
  let armed = false;
  let killed = false;
  let open = true;
  const shut = () => open && ((open = false), server.close());
  const kill = () => {
    killed = true;
    h.signal(b.proc, "SIGKILL"); // the API server and its engine core at once, as a lost node
    for (const s of sockets) s.destroy();
    shut();
  };
  const server = net.createServer((down) => {
    if (killed) return down.destroy();
    const up = net.connect(b.port, "127.0.0.1");
    sockets.add(down).add(up);
    const close = () => {
      down.destroy();
      up.destroy();
      sockets.delete(down);
      sockets.delete(up);
    };
    down.on("error", close).on("close", close);
    up.on("error", close).on("close", close);
    down.on("data", (chunk) => killed || up.write(chunk));
    up.on("data", (chunk) => {
      if (killed) return;
      if (!armed) return down.write(chunk);
      let pass = chunk.length;
      for (let at = chunk.indexOf("data: "); at >= 0; at = chunk.indexOf("data: ", at + 6)) {
        if (++events < GATE_EVENTS) continue;
        // through the end of this event
        const end = chunk.indexOf("\n\n", at);
        pass = end < 0 ? chunk.length : end + 2;
        break;
      }
      down.write(chunk.subarray(0, pass));
      if (events >= GATE_EVENTS) kill();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = server.address().port;
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    /** counting starts: the streams are about to be sent (the router's probes before are not counted) */
    arm: () => (armed = true),
    state: () => ({ killed, events }),
    close: shut,
  };
}
