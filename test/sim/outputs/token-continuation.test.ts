// A greedy answer continued from token ids is the rest of the unbroken answer: what the router's
// migration relies on. A chat's prompt ids (vLLM's `prompt_token_ids`, with `return_token_ids`) plus
// the first k output ids, sent as a completion's token-id prompt, give the same next ids and text, the
// same end (EOS or max_tokens) and its finish_reason, for every break point tried.
import { test } from "node:test";
import assert from "node:assert/strict";
import { startTestSim } from "../helpers.js";
import { postSse, type SseEvent } from "../sse.js";

const MODEL = "meta-llama/Llama-3.1-8B-Instruct";

interface Read {
  promptIds: number[];
  ids: number[];
  text: string;
  finish: string | null;
  dones: number;
  usage: { prompt_tokens: number; completion_tokens: number } | undefined;
}

function read(events: SseEvent[], kind: "chat" | "completion"): Read {
  const r: Read = { promptIds: [], ids: [], text: "", finish: null, dones: 0, usage: undefined };
  for (const e of events) {
    if (e.data === "[DONE]") {
      r.dones++;
      continue;
    }
    const d = e.data as {
      prompt_token_ids?: number[] | null;
      usage?: Read["usage"] | null;
      choices: {
        text?: string;
        delta?: { content?: string };
        finish_reason: string | null;
        token_ids?: number[] | null;
        prompt_token_ids?: number[] | null;
      }[];
    };
    if (d.prompt_token_ids) r.promptIds = d.prompt_token_ids;
    if (d.usage) r.usage = d.usage;
    for (const c of d.choices) {
      if (c.prompt_token_ids) r.promptIds = c.prompt_token_ids;
      r.text += (kind === "chat" ? c.delta?.content : c.text) ?? "";
      r.ids.push(...(c.token_ids ?? []));
      if (c.finish_reason) r.finish = c.finish_reason;
    }
  }
  return r;
}

test("a chat's prompt ids plus its first k output ids, as a completion's prompt, continue with the unbroken chat's ids, text and end", async () => {
  // a short mean answer length: some answers end at EOS before max_tokens, some at max_tokens
  const sim = await startTestSim(MODEL, ["--time-scale", "0.01", "--seed", "3", "--output-len-mean", "60"]);
  try {
    const ends = new Set<string>();
    for (let n = 0; n < 6; n++) {
      const chat = {
        model: MODEL,
        temperature: 0,
        max_tokens: 120,
        return_token_ids: true,
        stream: true,
        stream_options: { include_usage: true },
        messages: [
          { role: "system", content: "Answer at length." },
          { role: "user", content: `Question number ${n}?` },
        ],
      };
      const whole = read((await postSse(`${sim.url}/v1/chat/completions`, chat)).events, "chat");
      assert.equal(whole.dones, 1);
      assert.ok(whole.promptIds.length > 0, "the chat's prompt ids came back");
      const L = whole.ids.length;
      ends.add(whole.finish!);
      for (const k of [1, Math.floor(L / 2), L - 1]) {
        if (k < 1 || k >= L) continue;
        const rest = read(
          (
            await postSse(`${sim.url}/v1/completions`, {
              model: MODEL,
              temperature: 0,
              max_tokens: 120 - k,
              return_token_ids: true,
              add_special_tokens: false,
              stream: true,
              stream_options: { include_usage: true },
              prompt: [...whole.promptIds, ...whole.ids.slice(0, k)],
            })
          ).events,
          "completion",
        );
        const what = `answer ${n} broken after ${k} of ${L} tokens`;
        assert.deepEqual(rest.ids, whole.ids.slice(k), `${what}: the same ids`);
        assert.equal(rest.finish, whole.finish, `${what}: the same end`);
        assert.equal(rest.dones, 1);
        assert.equal(rest.usage?.prompt_tokens, whole.promptIds.length + k);
        assert.equal(rest.usage?.completion_tokens, L - k);
        // the text of the first k tokens is the unbroken text's start: the rest is its remainder
        assert.ok(whole.text.endsWith(rest.text), `${what}: the same text`);
        assert.equal(
          whole.text.length - rest.text.length,
          read((await postSse(`${sim.url}/v1/chat/completions`, { ...chat, max_tokens: k })).events, "chat")
            .text.length,
          `${what}: nothing lost or repeated at the break`,
        );
      }
    }
    assert.deepEqual([...ends].sort(), ["length", "stop"], "answers that end at EOS and at max_tokens");
  } finally {
    await sim.close();
  }
});
