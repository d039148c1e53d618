// Session identity through a live router (src/routing/sessions/session-identity.ts, wired in edge/ingress.ts):
// a generation request's session comes from vllm_xargs.agentic_context, the session header, the
// Responses chain (response affinity remembers each response's session with its engine), or, naming
// none, from the conversation it extends. The debug header (x-switchyard-route) names the session.
import { test } from "node:test";
import assert from "node:assert/strict";
import { ResponseAffinity } from "../../../src/router/dataplane/response-affinity.js";
import { parseReport } from "../../../src/router/cluster/peers.js";
import { startFakeVllm } from "../../../bench/support/fakes/fake-vllm.js";
import { post, routerFor } from "../../helpers/router.js";

const MODEL = "fake/model-a";

/** the session the router routed a request in (undefined: none), and the answer's body */
async function sent(
  url: string,
  path: string,
  body: Record<string, unknown>,
  headers: Record<string, string> = {},
): Promise<{ session: string | undefined; answer: Record<string, unknown> }> {
  const res = await post(
    `${url}${path}`,
    { model: MODEL, ...body },
    { "x-switchyard-debug": "1", ...headers },
  );
  assert.equal(res.status, 200, await res.clone().text());
  const route = res.headers.get("x-switchyard-route") ?? "";
  const m = /(?:^|; )session=([^;]*)/.exec(route);
  return {
    session: m ? decodeURIComponent(m[1]!) : undefined,
    answer: (await res.json()) as Record<string, unknown>,
  };
}

const system = { role: "system", content: `You are a coding agent. ${"tools and rules ".repeat(100)}` };
function turn(agent: string, n: number): Record<string, unknown> {
  const messages: unknown[] = [system, { role: "user", content: `${agent}: fix the build` }];
  for (let t = 0; t < n; t++)
    messages.push({ role: "assistant", content: `step ${t}` }, { role: "user", content: `tool output ${t}` });
  return { messages, max_tokens: 4 };
}

test("the router names a request's session from agentic_context ahead of the header, from the header, and from previous_response_id across a chain's turns", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "session" },
  );
  try {
    const chat = (extra: Record<string, unknown>, h: Record<string, string> = {}) =>
      sent(router.url, "/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], ...extra }, h);
    assert.equal((await chat({}, { "x-session-id": "s-1" })).session, "s-1");
    const program = {
      vllm_xargs: { agentic_context: { program_id: "task:coder", parent_program_id: "task:lead" } },
    };
    assert.equal((await chat(program, { "x-session-id": "s-1" })).session, "task:coder");
    // a Responses chain whose first turn named no session: it is named after its first response
    const first = await sent(router.url, "/v1/responses", { input: "hi" });
    assert.equal(first.session, undefined);
    const r1 = String(first.answer.id);
    const second = await sent(router.url, "/v1/responses", { input: "more", previous_response_id: r1 });
    assert.equal(second.session, `~r:${r1}`);
    // the third names the second's response: the router remembered that response's session
    const third = await sent(router.url, "/v1/responses", {
      input: "again",
      previous_response_id: String(second.answer.id),
    });
    assert.equal(third.session, `~r:${r1}`);
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, /switchyard_session_requests_total\{source="header"\} 1\n/);
    assert.match(metrics, /switchyard_session_requests_total\{source="agentic-context"\} 1\n/);
    assert.match(metrics, /switchyard_session_requests_total\{source="response-chain"\} 2\n/);
    // s-1, task:coder and the chain's
    assert.match(metrics, /switchyard_sessions 3\n/);
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("the router infers the session of a conversation that names none from its growing prompt, and does not when inference is off", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const on = await routerFor(
    engines.map((e) => e.url),
    { policy: "session" },
  );
  const off = await routerFor(
    engines.map((e) => e.url),
    { policy: "session", session: { infer: false } },
  );
  try {
    const path = "/v1/chat/completions";
    assert.equal((await sent(on.url, path, turn("alice", 0))).session, undefined);
    assert.equal((await sent(on.url, path, turn("bob", 0))).session, undefined);
    const alice = (await sent(on.url, path, turn("alice", 1))).session;
    const bob = (await sent(on.url, path, turn("bob", 1))).session;
    assert.ok(alice?.startsWith("~p:") && bob?.startsWith("~p:") && alice !== bob, `${alice} ${bob}`);
    assert.equal((await sent(on.url, path, turn("alice", 2))).session, alice);
    assert.equal((await sent(on.url, path, turn("bob", 2))).session, bob);
    await sent(off.url, path, turn("carol", 0));
    assert.equal((await sent(off.url, path, turn("carol", 1))).session, undefined);
  } finally {
    await on.close();
    await off.close();
    for (const e of engines) await e.close();
  }
});

test("a router whose policy reads no session key tracks no sessions, still shows a named one, and starts tracking when a reload brings a policy that reads them", async () => {
  const engines = [await startFakeVllm("a"), await startFakeVllm("b")];
  const router = await routerFor(
    engines.map((e) => e.url),
    { policy: "round-robin" },
  );
  const metric = async (line: RegExp) => {
    const m = line.exec(await (await fetch(`${router.url}/metrics`)).text());
    return m ? Number(m[1]) : NaN;
  };
  const sessions = () => metric(/^switchyard_sessions (\d+)$/m);
  const inferred = () => metric(/^switchyard_session_requests_total\{source="inferred"\} (\d+)$/m);
  try {
    const path = "/v1/chat/completions";
    for (let n = 0; n < 3; n++)
      assert.equal((await sent(router.url, path, turn("dave", n))).session, undefined);
    const named = await sent(router.url, path, turn("erin", 0), { "x-session-id": "s-9" });
    assert.equal(named.session, "s-9");
    assert.equal(await sessions(), 0);
    assert.equal(await inferred(), 0);
    for (const policy of ["least-load", "vllm-router-cache-aware"] as const) {
      router.router.reconfigure({ ...router.router.config, policy });
      await sent(router.url, path, turn("dave", 3));
      assert.equal(await sessions(), 0, policy);
    }
    router.router.reconfigure({ ...router.router.config, policy: "predictive" });
    // unnamed: had the turns before been remembered, this one would extend the last of them
    assert.equal((await sent(router.url, path, turn("dave", 4))).session, undefined);
    const dave = (await sent(router.url, path, turn("dave", 5))).session;
    assert.ok(dave?.startsWith("~p:"), `an inferred key: ${dave}`);
    assert.equal(await sessions(), 1);
    assert.equal(await inferred(), 1);
    // and back: what was tracked is forgotten, the gauge reads 0 again
    router.router.reconfigure({ ...router.router.config, policy: "round-robin" });
    assert.equal((await sent(router.url, path, turn("dave", 6))).session, undefined);
    assert.equal(await sessions(), 0);
  } finally {
    await router.close();
    for (const e of engines) await e.close();
  }
});

test("response affinity keeps each response's session and shares it with a router group as a fourth link field, which peers accept", () => {
  const a = new ResponseAffinity(10);
  a.sharing = true;
  a.remember("resp_1", "http://e1", "m", "s-1");
  a.remember("resp_2", "http://e1", "m");
  const links = a.take();
  assert.deepEqual(links, [
    ["resp_1", "http://e1", "m", "s-1"],
    ["resp_2", "http://e1", "m"],
  ]);
  const b = new ResponseAffinity(10);
  b.apply(links);
  assert.equal(b.home("resp_1")?.session, "s-1");
  assert.equal(b.home("resp_2")?.session, undefined);
  const report = parseReport(
    Buffer.from(JSON.stringify({ v: 1, id: "r1", seq: 1, load: [], picks: [], responses: links })),
  );
  assert.deepEqual(report?.responses, links);
});
