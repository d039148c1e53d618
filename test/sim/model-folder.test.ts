// `switchyard sim DIR` serves a Hugging Face model folder (test/fixtures/tiny-model) as `vllm serve DIR`
// does: the folder's name, its tokenizer's ids on /tokenize, its chat template's prompt, KV capacity
// and step times from its config.json shape, and streamed text made of its own tokens.
import { test } from "node:test";
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Tokenizer as HfTokenizer } from "@huggingface/tokenizers";
import { Template } from "@huggingface/jinja";
import { kvCapacity, StepTimer } from "../../src/engine/index.js";
import { buildEngineConfig } from "../../src/sim/app.js";
import { parseSimArgs } from "../../src/sim/config/config.js";
import { fixturePath } from "../helpers/vectors.js";
import { postJson, startTestSim } from "./helpers.js";
import { postSse } from "./sse.js";

const DIR = fixturePath("tiny-model");
const tokJson = JSON.parse(readFileSync(join(DIR, "tokenizer.json"), "utf8")) as object;
const tokCfg = JSON.parse(readFileSync(join(DIR, "tokenizer_config.json"), "utf8")) as {
  chat_template: string;
  bos_token: string;
  eos_token: string;
};
const hf = new HfTokenizer(tokJson, tokCfg);
const prompts = (
  JSON.parse(readFileSync(join(DIR, "expected-ids.json"), "utf8")) as { cases: Array<{ text: string }> }
).cases.map((c) => c.text);
/** a small KV pool: the tiny model on an 80 GB GPU would hold millions of blocks */
const SMALL = ["--num-gpu-blocks-override", "2048"];

test("a model folder is served under the name it was given, or --served-model-name, with its max_position_embeddings", async () => {
  const sim = await startTestSim(DIR, SMALL);
  try {
    const models = (await (await fetch(`${sim.url}/v1/models`)).json()) as {
      data: Array<{ id: string; root: string; max_model_len: number }>;
    };
    assert.equal(models.data[0]!.id, DIR);
    assert.equal(models.data[0]!.max_model_len, 2048);
  } finally {
    await sim.close();
  }
  const named = await startTestSim(DIR, [...SMALL, "--served-model-name", "tiny"]);
  try {
    const models = (await (await fetch(`${named.url}/v1/models`)).json()) as { data: Array<{ id: string }> };
    assert.equal(models.data[0]!.id, "tiny");
  } finally {
    await named.close();
  }
});

test("/tokenize answers @huggingface/tokenizers' own ids for 20 prompts, with and without special tokens", async () => {
  const sim = await startTestSim(DIR, SMALL);
  try {
    assert.equal(prompts.length, 20);
    for (const prompt of prompts) {
      for (const add of [true, false]) {
        const r = await postJson(`${sim.url}/tokenize`, { model: DIR, prompt, add_special_tokens: add });
        assert.equal(r.status, 200, r.text);
        assert.deepEqual(
          r.json.tokens,
          hf.encode(prompt, { add_special_tokens: add }).ids,
          JSON.stringify(prompt),
        );
      }
    }
  } finally {
    await sim.close();
  }
});

test("a chat's prompt tokens are the folder's template rendered with @huggingface/jinja, then encoded as vLLM does", async () => {
  const sim = await startTestSim(DIR, SMALL);
  try {
    const messages = [
      { role: "system", content: "You route requests." },
      { role: "user", content: "Which engine holds my prefix? café 🙂" },
    ];
    const text = new Template(tokCfg.chat_template).render({
      messages,
      add_generation_prompt: true,
      bos_token: tokCfg.bos_token,
      eos_token: tokCfg.eos_token,
    });
    const ids = hf.encode(text, { add_special_tokens: false }).ids;
    const tok = await postJson(`${sim.url}/tokenize`, { model: DIR, messages });
    assert.deepEqual(tok.json.tokens, ids);
    const chat = await postJson(`${sim.url}/v1/chat/completions`, { model: DIR, messages, max_tokens: 4 });
    assert.equal(chat.status, 200, chat.text);
    assert.equal(chat.json.usage.prompt_tokens, ids.length);
  } finally {
    await sim.close();
  }
});

test("KV capacity and step time follow config.json: a bigger hidden size leaves fewer KV tokens per GiB and takes longer", () => {
  const dir = mkdtempSync(join(tmpdir(), "sy-big-"));
  try {
    cpSync(DIR, dir, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8")) as Record<string, unknown>;
    cfg.hidden_size = 512;
    delete cfg.head_dim; // hidden / heads = 128, four times the tiny model's 32
    writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
    const small = buildEngineConfig(parseSimArgs([DIR, "--gpu", "l4"], {}));
    const big = buildEngineConfig(parseSimArgs([dir, "--gpu", "l4"], {}));
    assert.equal(small.model.params, 2_392_704);
    assert.equal(small.model.dtypeBytes, 2, "float32 checkpoint runs as bfloat16 (--dtype auto)");
    const s = kvCapacity(small);
    const b = kvCapacity(big);
    // 2 (K and V) x 2 layers x 2 KV heads x head_dim x 2 bytes
    assert.equal(s.kvBytesPerToken, 2 * 2 * 2 * 32 * 2);
    assert.equal(b.kvBytesPerToken, 4 * s.kvBytesPerToken);
    assert.ok(b.numGpuBlocks < s.numGpuBlocks / 3, `${b.numGpuBlocks} vs ${s.numGpuBlocks}`);
    const work = {
      prefillTokens: 4096,
      decodeSeqs: 0,
      attentionContext: 4096 * 2048,
      kvReadTokens: 0,
      loadBytesPerGpu: 0,
    };
    assert.ok(new StepTimer(big).time(work).duration > new StepTimer(small).time(work).duration);
    const f32 = buildEngineConfig(parseSimArgs([DIR, "--gpu", "l4", "--dtype", "float32"], {}));
    assert.equal(kvCapacity(f32).kvBytesPerToken, 2 * s.kvBytesPerToken);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a catalogue model takes another folder's tokenizer with --tokenizer", async () => {
  const sim = await startTestSim("facebook/opt-125m", [...SMALL, "--tokenizer", DIR]);
  try {
    const r = await postJson(`${sim.url}/tokenize`, { model: "facebook/opt-125m", prompt: "Hello world" });
    assert.deepEqual(r.json.tokens, hf.encode("Hello world").ids);
  } finally {
    await sim.close();
  }
});

test("streamed text is made of the folder's tokens: deltas joined equal /detokenize of the ids, which re-tokenize to the same ids", async () => {
  const sim = await startTestSim(DIR, SMALL);
  try {
    const r = await postSse(`${sim.url}/v1/completions`, {
      model: DIR,
      prompt: "The router",
      max_tokens: 24,
      ignore_eos: true,
      stream: true,
      return_token_ids: true,
    });
    assert.equal(r.status, 200, r.text);
    let text = "";
    const ids: number[] = [];
    for (const e of r.events) {
      const choice = (e.data as { choices?: Array<{ text: string; token_ids?: number[] | null }> })
        .choices?.[0];
      if (!choice) continue;
      text += choice.text;
      ids.push(...(choice.token_ids ?? []));
    }
    assert.equal(ids.length, 24);
    for (const id of ids) assert.ok(id >= 0 && id < 8192);
    assert.equal(hf.decode(ids, { skip_special_tokens: true, clean_up_tokenization_spaces: false }), text);
    const de = await postJson(`${sim.url}/detokenize`, { model: DIR, tokens: ids });
    assert.equal(de.json.prompt, text);
    assert.deepEqual(hf.encode(text, { add_special_tokens: false }).ids, ids);
  } finally {
    await sim.close();
  }
});
