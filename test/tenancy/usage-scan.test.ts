// UsageScan: the answer's usage in every protocol an engine answers with (OpenAI, Anthropic
// Messages, Responses; bodies and streams), wherever it sits in the body and however the bytes are
// split; only the usage at the protocol's place counts, never an object of that name deeper down or
// text inside a string.
import { test } from "node:test";
import assert from "node:assert/strict";
import { UsageScan, type FoundUsage } from "../../src/tenancy/usage-scan.js";

/** The usage found in `text` fed in pieces cut at `cuts` (every byte apart with "each"). */
function scan(text: string, sse: boolean, cuts: number[] | "each" = []): FoundUsage | undefined {
  const b = Buffer.from(text);
  const s = new UsageScan();
  const at = cuts === "each" ? [...Array(b.length).keys()].slice(1) : cuts;
  let from = 0;
  for (const c of [...at, b.length]) {
    s.feed(b.subarray(from, c), sse);
    from = c;
  }
  return s.usage;
}

/** Several ways to cut a text: none, a few fixed points, and byte by byte. */
function cutsOf(text: string): Array<number[] | "each"> {
  const n = Buffer.byteLength(text);
  return [[], [1], [Math.floor(n / 3), Math.floor(n / 2)], [n - 2], "each"];
}

const ev = (o: unknown, event?: string) =>
  `${event ? `event: ${event}\n` : ""}data: ${JSON.stringify(o)}\n\n`;

test("a chat answer's usage is found when megabytes of prompt_token_ids and prompt_logprobs follow it", () => {
  const body = JSON.stringify({
    id: "chatcmpl-1",
    choices: [{ index: 0, message: { role: "assistant", content: 'say "usage":{"prompt_tokens":1}' } }],
    usage: { prompt_tokens: 6001, total_tokens: 6091, completion_tokens: 90, prompt_tokens_details: null },
    prompt_logprobs: [
      null,
      ...Array.from({ length: 20_000 }, (_, i) => ({ [i]: { logprob: -1.5, rank: 1 } })),
    ],
    prompt_token_ids: Array.from({ length: 60_000 }, (_, i) => i),
    kv_transfer_params: null,
  });
  assert.ok(body.length > 1_000_000);
  for (const cuts of [[], [10], [body.length - 5], [...Array(100).keys()].map((i) => (i + 1) * 10_007)])
    assert.deepEqual(scan(body, false, cuts), { prompt: 6001, completion: 90 });
});

test("Anthropic Messages and Responses bodies: input_tokens / output_tokens, split anywhere", () => {
  const msg = JSON.stringify({
    id: "msg_1",
    type: "message",
    content: [{ type: "text", text: 'hi \\ there "usage":{}' }],
    stop_reason: "max_tokens",
    usage: { input_tokens: 37, output_tokens: 90 },
  });
  for (const cuts of cutsOf(msg)) assert.deepEqual(scan(msg, false, cuts), { prompt: 37, completion: 90 });
  const resp = JSON.stringify({
    id: "resp_1",
    object: "response",
    output: [{ type: "message", content: [{ type: "output_text", text: "x" }] }],
    // a tool's schema echoed back may name a property `usage`: deeper than the answer's own
    tools: [
      { type: "function", parameters: { properties: { usage: { input_tokens: 1, output_tokens: 1 } } } },
    ],
    usage: {
      input_tokens: 38,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: 90,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: 128,
    },
    metadata: { usage: { input_tokens: 5, output_tokens: 5 } },
  });
  for (const cuts of cutsOf(resp)) assert.deepEqual(scan(resp, false, cuts), { prompt: 38, completion: 90 });
});

test("a Messages stream: the prompt from message_start, the output from message_delta (event: lines skipped)", () => {
  const start = ev(
    {
      type: "message_start",
      message: { id: "m", content: [], usage: { input_tokens: 12, output_tokens: 0 } },
    },
    "message_start",
  );
  const delta = ev(
    { type: "content_block_delta", index: 0, delta: { type: "text_delta", text: 'a\n"b\\' } },
    "content_block_delta",
  );
  const end = ev(
    { type: "message_delta", delta: { stop_reason: "max_tokens" }, usage: { output_tokens: 9 } },
    "message_delta",
  );
  const whole = start + delta + delta + end + ev({ type: "message_stop" }, "message_stop");
  for (const cuts of cutsOf(whole)) assert.deepEqual(scan(whole, true, cuts), { prompt: 12, completion: 9 });
  // cut before message_delta: the prompt is known, the output is not (message_start's 0 is no count)
  assert.deepEqual(scan(start + delta, true), { prompt: 12, completion: undefined });
});

test("a Responses stream: usage from response.completed, none from the created event's null", () => {
  const created = ev(
    {
      type: "response.created",
      sequence_number: 0,
      response: { id: "r", status: "in_progress", usage: null },
    },
    "response.created",
  );
  const text = ev(
    { type: "response.output_text.delta", sequence_number: 1, delta: "usage" },
    "response.output_text.delta",
  );
  const done = ev(
    {
      type: "response.completed",
      sequence_number: 2,
      response: {
        id: "r",
        output: [{ content: [{ text: "x".repeat(70_000) }] }],
        usage: { input_tokens: 7, output_tokens: 3 },
      },
    },
    "response.completed",
  );
  const whole = created + text + done;
  for (const cuts of [[], [5], [created.length + 3], [whole.length - 40]])
    assert.deepEqual(scan(whole, true, cuts), { prompt: 7, completion: 3 });
  assert.equal(scan(created + text, true), undefined);
});

test("chat streams: the closing usage event counts, a running count (an event with choices) gives only a prompt", () => {
  const content = ev({ choices: [{ index: 0, delta: { content: "hi" } }], usage: null });
  const usage = ev({ choices: [], usage: { prompt_tokens: 12, completion_tokens: 3, total_tokens: 15 } });
  const whole = content + content + usage + "data: [DONE]\n\n";
  for (const cuts of cutsOf(whole)) assert.deepEqual(scan(whole, true, cuts), { prompt: 12, completion: 3 });
  const running = (n: number) =>
    ev({
      choices: [{ index: 0, delta: { content: "x" } }],
      usage: { prompt_tokens: 4, completion_tokens: n },
    });
  // continuous usage: one choice's count so far, never the answer's: no completion, no closing prompt
  assert.equal(scan(running(1) + running(2) + running(3), true), undefined);
  const s = new UsageScan();
  s.feed(Buffer.from(running(1) + running(2)), true);
  assert.equal(s.runningPrompt, 4);
  // the closing event (no choices) settles it, whatever the running counts said
  assert.deepEqual(scan(running(1) + running(2) + usage, true), { prompt: 12, completion: 3 });
  // CRLF line ends are SSE too
  assert.deepEqual(scan(usage.replace(/\n/g, "\r\n"), true), { prompt: 12, completion: 3 });
});

test("text that only looks like usage is never taken: in strings, escaped, nested, or not an object", () => {
  assert.equal(scan('{"content":"\\"usage\\":{\\"prompt_tokens\\":5}"}', false, "each"), undefined);
  assert.equal(scan('{"choices":[{"message":{"usage":{"prompt_tokens":5}}}]}', false, "each"), undefined);
  assert.equal(scan('{"usage":null,"x":{"usage":{"prompt_tokens":5}}}', false, "each"), undefined);
  assert.equal(scan('[{"usage":{"prompt_tokens":5}}]', false), undefined);
  // an oversized "usage" object is no usage (bounded copy)
  assert.equal(scan(`{"usage":{"pad":"${"x".repeat(10_000)}","prompt_tokens":5}}`, false), undefined);
  // a key with an escape is not `usage`
  assert.equal(scan('{"us\\u0061ge":{"prompt_tokens":5}}', false), undefined);
});

test("random documents cut at random points: the top-level usage and nothing else, every time", () => {
  let x = 0x2545f491;
  const rnd = (n: number) => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  const PIECES = ['"', "\\", "usage", '"usage":{', "{", "}", "[", "]", ":", ",", "é", "😀", "\n", "a"];
  const str = () => Array.from({ length: rnd(6) }, () => PIECES[rnd(PIECES.length)]).join("");
  const value = (depth: number): unknown => {
    const k = rnd(depth > 3 ? 3 : 6);
    if (k === 0) return rnd(1000);
    if (k === 1) return str();
    if (k === 2) return rnd(2) === 0 ? null : true;
    if (k === 3) return Array.from({ length: rnd(4) }, () => value(depth + 1));
    // decoys: objects named usage below the top level
    const o: Record<string, unknown> = {};
    for (let i = rnd(4); i > 0; i--) o[rnd(3) === 0 ? "usage" : str()] = value(depth + 1);
    return o;
  };
  for (let round = 0; round < 300; round++) {
    const doc: Record<string, unknown> = {};
    const usage = { prompt_tokens: rnd(10_000), completion_tokens: rnd(10_000), details: value(2) };
    const at = rnd(5);
    for (let i = 0; i < 5; i++) {
      if (i === at) doc.usage = usage;
      const k = str();
      if (k !== "usage") doc[k] = value(1);
    }
    if (rnd(4) === 0) delete doc.usage;
    const text = JSON.stringify(doc);
    const n = Buffer.byteLength(text);
    const cuts = [...new Set(Array.from({ length: rnd(8) }, () => rnd(n)))].sort((a, b) => a - b);
    const want =
      "usage" in doc ? { prompt: usage.prompt_tokens, completion: usage.completion_tokens } : undefined;
    const sized = want && Buffer.byteLength(JSON.stringify(usage)) > 4096 ? undefined : want;
    assert.deepEqual(scan(text, false, cuts), sized, text);
    // the same document as one SSE event's data
    assert.deepEqual(scan(`event: x\ndata: ${text}\n\n`, true, cuts), sized, text);
  }
});

test("several choices with continuous usage: a stream cut before its closing event has no completion count, however the events are split", () => {
  // n = 3: each event reports its own choice's running count (vLLM's previous_num_tokens[i])
  let text = "";
  for (let t = 1; t <= 5; t++)
    for (let i = 0; i < 3; i++)
      text += ev({
        id: "cmpl-1",
        choices: [{ index: i, text: "x", finish_reason: null }],
        usage: { prompt_tokens: 9, completion_tokens: t, total_tokens: 9 + t },
      });
  for (const cuts of cutsOf(text)) assert.equal(scan(text, true, cuts), undefined);
  // token-in generate puts the usage before the choices: the event is judged when it ends
  const gen = `data: {"request_id":"r","usage":{"prompt_tokens":2,"completion_tokens":7},"choices":[{"index":1,"token_ids":[5]}]}\n\n`;
  for (const cuts of cutsOf(gen)) assert.equal(scan(gen, true, cuts), undefined);
  const closing = `data: {"request_id":"r","usage":{"prompt_tokens":2,"completion_tokens":40},"choices":[]}\n\n`;
  assert.deepEqual(scan(gen + closing, true), { prompt: 2, completion: 40 });
  // an event cut before it ends settles nothing
  assert.equal(scan(closing.slice(0, -2), true), undefined);
});
