// The migration ledger and plan on their own: what a stream keeps, what reaches the client, and the
// request that continues a stream, for vLLM's completion and chat chunk formats.
import { test } from "node:test";
import assert from "node:assert/strict";
import { MigrationLedger } from "../../../src/router/migration/ledger.js";
import {
  continuation,
  firstBody,
  planMigration,
  type MigrationPlan,
} from "../../../src/router/migration/rules.js";
import type { RoutedRequest } from "../../../src/router/request/routed-request.js";

const ev = (doc: unknown) => `data: ${JSON.stringify(doc)}\n\n`;
const cmpl = (text: string, ids: number[], extra: Record<string, unknown> = {}) =>
  ev({
    id: "cmpl-1",
    object: "text_completion",
    created: 10,
    model: "m",
    choices: [
      { index: 0, text, logprobs: null, finish_reason: null, stop_reason: null, ...extra, token_ids: ids },
    ],
    usage: null,
  });

function routed(path: string, parsed: Record<string, unknown>): RoutedRequest {
  return {
    path,
    model: "m",
    stream: parsed.stream === true,
    sessionKey: undefined,
    body: Buffer.from(JSON.stringify(parsed)),
    parsed,
    generation: true,
  };
}

test("the ledger relays whole events only, blanks token ids nobody asked for, and keeps them", () => {
  const l = new MigrationLedger("completion", true);
  const first = cmpl(" a", [5], { prompt_token_ids: [1, 2, 3] });
  // an event split across chunks (and a UTF-8 sequence split in the middle) comes out whole
  const bytes = Buffer.from(first + cmpl(" é", [6]));
  const cut = bytes.indexOf(Buffer.from("é")) + 1;
  const out1 = l.relay(bytes.subarray(0, cut));
  assert.equal(out1.split("\n\n").length, 2, "only the first, whole event");
  assert.match(out1, /"prompt_token_ids":null,"token_ids":null/);
  const out2 = l.relay(bytes.subarray(cut));
  assert.match(out2, /"text":" é"/);
  assert.deepEqual(l.promptIds, [1, 2, 3]);
  assert.deepEqual(l.outputIds, [5, 6]);
  assert.equal(l.text, " a é");
  assert.equal(l.tokens, 2);
  assert.equal(l.exact, true);
});

test("a client that asked for token ids gets them as the engine sent them", () => {
  const l = new MigrationLedger("completion", false);
  const e = cmpl(" a", [5], { prompt_token_ids: [1] });
  assert.equal(l.relay(Buffer.from(e)), e);
});

test("an engine's error event is held back, and its [DONE] with it", () => {
  const l = new MigrationLedger("chat", true);
  const err = ev({
    error: { message: "EngineCore died", type: "InternalServerError", param: null, code: 500 },
  });
  assert.equal(l.relay(Buffer.from(err + "data: [DONE]\n\n")), "");
  assert.equal(l.heldError?.message, "EngineCore died");
  assert.equal(l.sawDone, false);
  // a client error found mid-stream is the request's own: it passes
  const l2 = new MigrationLedger("chat", true);
  const bad = ev({ error: { message: "bad", code: 400 } });
  assert.equal(l2.relay(Buffer.from(bad)), bad);
});

test("after a migration the next engine's stream reads as the same one: role event dropped, id kept, usage whole", () => {
  const l = new MigrationLedger("chat", true);
  const chunk = (id: string, delta: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
    ev({
      id,
      object: "chat.completion.chunk",
      created: 1,
      model: "m",
      choices: [{ index: 0, delta, ...extra }],
    });
  l.relay(
    Buffer.from(
      ev({
        id: "chatcmpl-a",
        object: "chat.completion.chunk",
        created: 1,
        model: "m",
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
        prompt_token_ids: [1, 2, 3, 4],
      }) + chunk("chatcmpl-a", { content: " x" }, { token_ids: [9] }),
    ),
  );
  assert.equal(l.tokens, 1);
  l.beginContinuation();
  const out = l.relay(
    Buffer.from(
      ev({
        id: "chatcmpl-b",
        object: "chat.completion.chunk",
        created: 2,
        model: "m",
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
        prompt_token_ids: [1, 2, 3, 4, 7, 9],
      }) +
        chunk("chatcmpl-b", { content: " y" }, { token_ids: [8], finish_reason: "length" }) +
        ev({
          id: "chatcmpl-b",
          object: "chat.completion.chunk",
          created: 2,
          model: "m",
          choices: [],
          usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
        }) +
        "data: [DONE]\n\n",
    ),
  );
  const events = out.split("\n\n").filter(Boolean);
  assert.equal(events.length, 3, out);
  const content = JSON.parse(events[0]!.slice(6)) as Record<string, unknown>;
  assert.equal(content.id, "chatcmpl-a");
  assert.equal(content.created, 1);
  assert.deepEqual((content.choices as { token_ids: unknown }[])[0]!.token_ids, null);
  const usage = (JSON.parse(events[1]!.slice(6)) as { usage: unknown }).usage;
  assert.deepEqual(usage, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 });
  assert.equal(events[2], "data: [DONE]");
  assert.equal(l.text, " x y");
  assert.equal(l.migrations, 1);
});

test("completion logprobs' text offsets run on from the text delivered before the migration", () => {
  const l = new MigrationLedger("completion", true);
  l.relay(Buffer.from(cmpl("héllo", [1], { prompt_token_ids: [0] })));
  l.beginContinuation();
  const out = l.relay(Buffer.from(cmpl(" w", [2], { logprobs: { text_offset: [0], tokens: [" w"] } })));
  const doc = JSON.parse(out.slice(6)) as { choices: { logprobs: { text_offset: number[] } }[] };
  assert.deepEqual(doc.choices[0]!.logprobs.text_offset, [5]);
});

test("planMigration: what may migrate, and why the rest may not", () => {
  const plan = (path: string, p: Record<string, unknown>) => planMigration(path, routed(path, p));
  const chat = { model: "m", messages: [{ role: "user", content: "hi" }], stream: true };
  const c = { model: "m", prompt: "hi", stream: true };
  assert.equal((plan("/v1/chat/completions", chat) as MigrationPlan).kind, "chat");
  assert.equal((plan("/v1/completions", c) as MigrationPlan).kind, "completion");
  assert.equal(plan("/v1/completions", { ...c, stream: false }), undefined);
  assert.equal(plan("/v1/embeddings", c), undefined);
  assert.match(plan("/v1/completions", { ...c, n: 2 }) as string, /n > 1/);
  assert.match(plan("/v1/completions", { ...c, echo: true }) as string, /echo/);
  assert.match(plan("/v1/completions", { ...c, prompt: ["a", "b"] }) as string, /more than one prompt/);
  assert.match(plan("/v1/chat/completions", { ...chat, tools: [{ type: "function" }] }) as string, /tool/);
  assert.equal(
    typeof plan("/v1/chat/completions", { ...chat, tools: [{ type: "function" }], tool_choice: "none" }),
    "object",
  );
  assert.match(
    plan("/v1/chat/completions", { ...chat, response_format: { type: "json_object" } }) as string,
    /structured/,
  );
  assert.match(plan("/v1/completions", { ...c, guided_regex: "a+" }) as string, /structured/);
  assert.match(
    plan("/v1/completions", { ...c, stop: ["\n"], include_stop_str_in_output: true }) as string,
    /include_stop_str_in_output/,
  );
});

test("firstBody asks for token ids with one added field; continuation asks for what is left", () => {
  const p = { model: "m", prompt: "hi", max_tokens: 10, min_tokens: 4, stream: true };
  const pl = planMigration("/v1/completions", routed("/v1/completions", p)) as MigrationPlan;
  const sent = JSON.parse(firstBody(Buffer.from(JSON.stringify(p) + "\n"), pl).toString()) as Record<
    string,
    unknown
  >;
  assert.equal(sent.return_token_ids, true);
  assert.equal(sent.prompt, "hi");
  const l = new MigrationLedger("completion", true);
  l.relay(Buffer.from(cmpl(" a", [5], { prompt_token_ids: [1, 2] }) + cmpl(" b", [6])));
  const next = continuation(pl, l);
  assert.equal(next.kind, "request");
  if (next.kind !== "request") return;
  const body = JSON.parse(next.body.toString()) as Record<string, unknown>;
  assert.deepEqual(body.prompt, [1, 2, 5, 6]);
  assert.equal(body.max_tokens, 8);
  assert.equal(body.min_tokens, 2);
  // nothing left of the budget: the router ends the stream itself
  const l2 = new MigrationLedger("completion", true);
  l2.relay(Buffer.from(cmpl(" a", [5, 6, 7, 8, 9, 10, 11, 12, 13, 14], { prompt_token_ids: [1] })));
  assert.deepEqual(continuation(pl, l2), { kind: "end", finish: "length" });

  const chatP = {
    model: "m",
    messages: [{ role: "user", content: "hi" }],
    max_completion_tokens: 5,
    stream: true,
  };
  const chatPlan = planMigration(
    "/v1/chat/completions",
    routed("/v1/chat/completions", chatP),
  ) as MigrationPlan;
  // the first engine's ids (the prompt's top-level on its role event): a completion from them
  const lc = new MigrationLedger("chat", true);
  const chatEvents = (promptIds: number[] | undefined) =>
    Buffer.from(
      ev({
        id: "c",
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
        ...(promptIds ? { prompt_token_ids: promptIds } : {}),
      }) +
        ev({ id: "c", choices: [{ index: 0, delta: { content: " once" }, token_ids: [3] }] }) +
        ev({ id: "c", choices: [{ index: 0, delta: { content: " upon" }, token_ids: [4] }] }),
    );
  lc.relay(chatEvents([100, 101, 102]));
  const nc = continuation(chatPlan, lc);
  assert.equal(nc.kind, "request");
  if (nc.kind !== "request") return;
  assert.equal(nc.asTokens?.path, "/v1/completions");
  const cb = JSON.parse(nc.body.toString()) as Record<string, unknown>;
  assert.deepEqual(cb, {
    model: "m",
    stream: true,
    prompt: [100, 101, 102, 3, 4],
    add_special_tokens: false,
    max_tokens: 3,
    return_token_ids: true,
    n: 1,
  });
  // a chat that set no budget: null, which vLLM reads as what the context leaves (as for the chat)
  const open = { ...chatP, max_completion_tokens: undefined, logprobs: true, top_logprobs: 2 };
  const openPlan = planMigration("/v1/chat/completions", routed("/v1/chat/completions", open));
  const no = continuation(openPlan as MigrationPlan, lc);
  assert.ok(no.kind === "request" && no.asTokens?.topLogprobs === 2);
  const ob = JSON.parse(no.body.toString()) as Record<string, unknown>;
  assert.equal(ob.max_tokens, null);
  assert.equal(ob.logprobs, 2, "a completion's logprobs count is chat's top_logprobs");
  assert.equal(ob.top_logprobs, undefined);

  // no ids from the engine: a greedy answer cannot continue exactly, and says so
  const noIds = new MigrationLedger("chat", true);
  noIds.relay(
    Buffer.from(
      ev({ id: "c", choices: [{ index: 0, delta: { content: " once" } }] }) +
        ev({ id: "c", choices: [{ index: 0, delta: { content: " upon" } }] }),
    ),
  );
  const greedyChat = { ...chatP, temperature: 0 };
  const greedyPlan = planMigration("/v1/chat/completions", routed("/v1/chat/completions", greedyChat));
  const refused = continuation(greedyPlan as MigrationPlan, noIds);
  assert.equal(refused.kind, "refused");
  assert.ok(refused.kind === "refused" && refused.outcome === "no_token_ids");
  assert.match((refused as { why: string }).why, /no token ids/);
  // a sampled one (no temperature: vLLM's default samples) continues from the text: the partial
  // answer as an open assistant message
  const text = continuation(chatPlan, noIds);
  assert.equal(text.kind, "request");
  if (text.kind !== "request") return;
  assert.equal(text.asTokens, undefined, "the client's route");
  const tb = JSON.parse(text.body.toString()) as Record<string, unknown>;
  assert.deepEqual(tb.messages, [
    { role: "user", content: "hi" },
    { role: "assistant", content: " once upon" },
  ]);
  assert.equal(tb.continue_final_message, true);
  assert.equal(tb.add_generation_prompt, false);
  assert.equal(tb.max_completion_tokens, 3);
  // a greedy chat with an image may not move at all (a token-id prompt cannot carry the image)
  const image = {
    ...chatP,
    top_k: 1,
    messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "data:," } }] }],
  };
  assert.match(
    planMigration("/v1/chat/completions", routed("/v1/chat/completions", image)) as string,
    /image, audio or video/,
  );
});

test("a chat continued as a completion reads as the same chat stream: chat chunks, its id, logprobs in chat's layout, usage whole", () => {
  const l = new MigrationLedger("chat", false);
  l.relay(
    Buffer.from(
      ev({
        id: "chatcmpl-a",
        object: "chat.completion.chunk",
        created: 1,
        model: "m",
        choices: [{ index: 0, delta: { role: "assistant", content: "" } }],
        prompt_token_ids: [1, 2, 3],
      }) +
        ev({
          id: "chatcmpl-a",
          object: "chat.completion.chunk",
          created: 1,
          model: "m",
          choices: [{ index: 0, delta: { content: " x" }, token_ids: [9] }],
        }),
    ),
  );
  l.beginContinuation({ path: "/v1/completions", topLogprobs: 1 });
  assert.equal(l.path, "/v1/completions");
  const lp = {
    text_offset: [0],
    token_logprobs: [-0.5],
    tokens: [" y"],
    top_logprobs: [{ " y": -0.5, " z": -1.5 }],
  };
  const out = l.relay(
    Buffer.from(
      cmpl(" y", [8], { logprobs: lp, prompt_token_ids: [1, 2, 3, 9] }) +
        cmpl("", [], { finish_reason: "length" }) +
        ev({
          id: "cmpl-b",
          object: "text_completion",
          created: 2,
          model: "m",
          choices: [],
          usage: { prompt_tokens: 4, completion_tokens: 1, total_tokens: 5 },
        }) +
        "data: [DONE]\n\n",
    ),
  );
  const events = out.split("\n\n").filter(Boolean);
  assert.equal(events.length, 4, out);
  const docs = events.slice(0, 3).map((e) => JSON.parse(e.slice(6)) as Record<string, unknown>);
  for (const d of docs) {
    assert.equal(d.id, "chatcmpl-a");
    assert.equal(d.object, "chat.completion.chunk");
    assert.equal(d.created, 1);
  }
  const choice = (docs[0]!.choices as Record<string, unknown>[])[0]!;
  assert.deepEqual(choice.delta, { content: " y" });
  assert.equal(choice.text, undefined);
  assert.equal(choice.prompt_token_ids, undefined);
  assert.deepEqual(choice.token_ids, [8], "the client asked for ids: they pass");
  assert.deepEqual(choice.logprobs, {
    content: [
      {
        token: " y",
        logprob: -0.5,
        bytes: [32, 121],
        top_logprobs: [{ token: " y", logprob: -0.5, bytes: [32, 121] }],
      },
    ],
  });
  assert.equal((docs[1]!.choices as Record<string, unknown>[])[0]!.finish_reason, "length");
  assert.deepEqual(docs[2]!.usage, { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 });
  assert.equal(events[3], "data: [DONE]");
  assert.equal(l.text, " x y");
  assert.deepEqual(l.outputIds, [9, 8]);
});

test("a stream blocks its own migration when it turns out to call tools or to reason", () => {
  const l = new MigrationLedger("chat", true);
  l.relay(Buffer.from(ev({ id: "c", choices: [{ index: 0, delta: { reasoning_content: "hmm" } }] })));
  assert.match(l.blocked!, /reasoning/);
  const t = new MigrationLedger("chat", true);
  t.relay(Buffer.from(ev({ id: "c", choices: [{ index: 0, delta: { tool_calls: [{ index: 0 }] } }] })));
  assert.equal(t.blocked, "tool calls");
});
