// Mid-stream migration end to end, against real `switchyard sim` processes: a stream whose engine is
// killed continues on another engine and reads exactly as an unbroken answer from a third sim with
// the same seed (the sim's greedy output is a function of the whole context, so a continuation
// built from the delivered tokens must give the very same text).
import { test } from "node:test";
import assert from "node:assert/strict";
import { startTestSim } from "../../sim/helpers.js";
import {
  continuedMigrations,
  eightStreamsOneEngineKilled,
  type StreamRequest,
} from "../../helpers/migration-kill.js";
import { post, routerFor, waitUntil } from "../../helpers/router.js";

const MODEL = "Qwen/Qwen2.5-0.5B-Instruct";
/** slow enough that a kill lands mid-stream; a mean answer length far past max_tokens */
const SIM_FLAGS = ["--time-scale", "5", "--seed", "7", "--output-len-mean", "100000"];

function requestOf(i: number): StreamRequest {
  const common = { model: MODEL, max_tokens: 160, temperature: 0, stream_options: { include_usage: true } };
  // two of each kind on each engine (round-robin puts even requests on one engine, odd on the other)
  if (i % 4 < 2)
    return {
      kind: "chat",
      body: { ...common, messages: [{ role: "user", content: `Tell story number ${i}` }] },
    };
  return { kind: "completion", body: { ...common, prompt: `Once upon a time, story ${i} began` } };
}

test("8 greedy streams, one engine SIGKILLed mid-stream: every stream ends once, no error, same text and usage as an unbroken answer", async () => {
  await eightStreamsOneEngineKilled(MODEL, SIM_FLAGS, requestOf, async ({ routerUrl, streams, unbroken }) => {
    for (let i = 0; i < 8; i++) {
      const s = streams[i]!;
      const kind = requestOf(i).kind;
      const want = unbroken[i]!;
      assert.equal(s.status, 200);
      assert.deepEqual(s.errors, [], `stream ${i}: no error event`);
      assert.equal(s.dones, 1, `stream ${i}: exactly one [DONE]`);
      assert.deepEqual(s.oddities, [], `stream ${i}: nothing unexpected`);
      assert.equal(s.ids.size, 1, `stream ${i}: one response id throughout`);
      assert.equal(s.text, want.text, `stream ${i} (${kind}, started on ${s.route}): the unbroken answer`);
      assert.equal(s.finish, want.finish);
      assert.deepEqual(s.usage, want.usage, `stream ${i}: usage counts the prompt once and every token`);
      assert.equal(s.usage?.completion_tokens, 160);
      assert.deepEqual(s.tokenIds, [], "token ids the client did not ask for stay out of its stream");
    }
    const m = await (await fetch(`${routerUrl}/metrics`)).text();
    assert.equal(continuedMigrations(m), 4, "the four streams on the killed engine moved");
    assert.match(m, /switchyard_migration_seconds_count\{model="Qwen\/Qwen2.5-0.5B-Instruct"\} 4/);
  });
});

/** The parts of a JSON answer the non-streamed test compares. */
interface Answer {
  object: string;
  usage: unknown;
  choices: {
    text?: string;
    message?: { content: string };
    finish_reason: string;
    token_ids?: number[] | null;
  }[];
}

test("migration.nonStreaming: a JSON answer whose engine dies mid-generation is continued elsewhere and equals the unbroken one", async () => {
  const flags = ["--time-scale", "5", "--seed", "5", "--output-len-mean", "100000"];
  const reference = await startTestSim(MODEL, flags);
  try {
    for (const kind of ["completion", "chat"] as const) {
      const sims = await Promise.all([0, 1].map(() => startTestSim(MODEL, flags)));
      const router = await routerFor(
        sims.map((s) => s.url),
        { migration: { nonStreaming: true } },
      );
      try {
        await waitUntil(() => router.router.registry.snapshot().every((v) => v.healthy), 10_000, "both sims");
        const body =
          kind === "chat"
            ? { model: MODEL, max_tokens: 80, temperature: 0, messages: [{ role: "user", content: "json?" }] }
            : { model: MODEL, max_tokens: 80, temperature: 0, prompt: "a JSON answer" };
        const path = kind === "chat" ? "/v1/chat/completions" : "/v1/completions";
        const tokens = () => sims.map((s) => s.ctx.runtime.snapshot().counters.generationTokens);
        const pending = post(`${router.url}${path}`, body);
        // the engine it went to has produced a few tokens: it stops, its connections cut
        await waitUntil(() => tokens().some((n) => n >= 10), 30_000, "generation under way");
        await sims[tokens().findIndex((n) => n >= 10)]!.close();
        const r = await pending;
        assert.equal(r.status, 200);
        const got = (await r.json()) as Answer;
        const want = (await (await post(`${reference.url}${path}`, body)).json()) as Answer;
        const text = (x: Answer) => (kind === "chat" ? x.choices[0]!.message?.content : x.choices[0]!.text);
        assert.equal(text(got), text(want), `${kind}: the unbroken answer`);
        assert.deepEqual(got.usage, want.usage);
        assert.equal(got.object, want.object);
        assert.equal(got.choices[0]!.finish_reason, "length");
        assert.equal(got.choices[0]!.token_ids, null, "no token ids the client did not ask for");
        const m = await (await fetch(`${router.url}/metrics`)).text();
        assert.match(m, /switchyard_migrations_total\{[^}]*outcome="continued"\} 1/);
      } finally {
        await router.close();
        for (const s of sims) await s.close();
      }
    }
  } finally {
    await reference.close();
  }
});
