// Pooling endpoints with deterministic answers: embeddings are a hash of the token ids, normalised;
// score and rerank are the token-set overlap (Jaccard) of the two texts. Good enough for routers and
// clients to exercise the API shape and for tests to predict results; no semantics are modelled.
import { HttpError } from "../../http/errors.js";
import { newRequestHex } from "./completions.js";
import { resolveRequestModel, type SimContext } from "../serving/context.js";
import { embeddingsSchema, rerankSchema, scoreSchema, validate } from "../protocol/schemas.js";

/** Long texts are tokenised in slices between turns of the event loop (Tokenizer.encodeAsync). */
async function encodeAll(ctx: SimContext, texts: readonly string[]): Promise<number[][]> {
  const out: number[][] = [];
  for (const t of texts) out.push(await ctx.tokenizer.encodeAsync(t));
  return out;
}

async function inputsToIds(
  ctx: SimContext,
  input: string | string[] | number[] | number[][],
): Promise<number[][]> {
  const tk = ctx.tokenizer;
  const lists =
    typeof input === "string"
      ? await encodeAll(ctx, [input])
      : typeof input[0] === "string"
        ? await encodeAll(ctx, input as string[])
        : typeof input[0] === "number"
          ? [input as number[]]
          : (input as number[][]);
  for (const ids of lists) {
    if (ids.length > ctx.engineConfig.maxModelLen) {
      throw new HttpError(
        400,
        `This model's maximum context length is ${ctx.engineConfig.maxModelLen} tokens. However, you requested ${ids.length} tokens in the input for embedding generation. Please reduce the length of the input.`,
        "input",
      );
    }
    for (const id of ids) {
      if (!Number.isInteger(id) || id < 0 || id >= tk.vocabSize) {
        throw new HttpError(400, `Token id ${id} is out of vocabulary`, "input");
      }
    }
  }
  return lists;
}

/** Unit vector derived from the token ids: each token adds a pseudo-random ±1 pattern. */
export function embedTokens(ids: readonly number[], dims: number): Float32Array {
  const acc = new Float64Array(dims);
  for (const id of ids) {
    let h = Math.imul(id ^ 0x27d4eb2d, 0x9e3779b1) >>> 0;
    for (let j = 0; j < dims; j++) {
      h ^= h << 13;
      h ^= h >>> 17;
      h ^= h << 5;
      acc[j]! += (h & 1) === 0 ? 1 : -1;
    }
  }
  let norm = 0;
  for (let j = 0; j < dims; j++) norm += acc[j]! * acc[j]!;
  norm = Math.sqrt(norm) || 1;
  const out = new Float32Array(dims);
  for (let j = 0; j < dims; j++) out[j] = acc[j]! / norm;
  return out;
}

function usage(tokens: number) {
  return { prompt_tokens: tokens, total_tokens: tokens, completion_tokens: 0, prompt_tokens_details: null };
}

export async function handleEmbeddings(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(embeddingsSchema, raw);
  const model = resolveRequestModel(ctx, body.model);
  const lists = await inputsToIds(ctx, body.input);
  const dims = body.dimensions ?? ctx.model.hiddenSize;
  let tokens = 0;
  const data = lists.map((ids, index) => {
    tokens += ids.length;
    const v = embedTokens(ids, dims);
    const embedding =
      body.encoding_format === "base64"
        ? Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64")
        : Array.from(v);
    return { index, object: "embedding", embedding };
  });
  return {
    id: `embd-${newRequestHex()}`,
    object: "list",
    created: Math.floor(Date.now() / 1000),
    model: model.name,
    data,
    usage: usage(tokens),
  };
}

function overlap(a: readonly number[], b: readonly number[]): number {
  const sa = new Set(a);
  const sb = new Set(b);
  let inter = 0;
  for (const x of sa) if (sb.has(x)) inter++;
  const union = sa.size + sb.size - inter;
  return union === 0 ? 0 : inter / union;
}

const asList = (v: string | string[]) => (typeof v === "string" ? [v] : v);

export async function handleScore(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(scoreSchema, raw);
  const model = resolveRequestModel(ctx, body.model);
  const left = body.text_1 ?? body.queries;
  const right = body.text_2 ?? body.documents ?? body.items;
  if (left === undefined) throw new HttpError(400, "text_1 (or queries) is required", "text_1");
  if (right === undefined) throw new HttpError(400, "text_2 (or documents) is required", "text_2");
  const l = asList(left);
  const r = asList(right);
  if (l.length !== 1 && l.length !== r.length) {
    throw new HttpError(400, "text_1 must be one text or as many texts as text_2", "text_1");
  }
  const ls = await encodeAll(ctx, l);
  const rs = await encodeAll(ctx, r);
  let tokens = 0;
  const data = rs.map((b, index) => {
    const a = ls.length === 1 ? ls[0]! : ls[index]!;
    tokens += a.length + b.length;
    return { index, object: "score", score: overlap(a, b) };
  });
  return {
    id: `score-${newRequestHex()}`,
    object: "list",
    created: Math.floor(Date.now() / 1000),
    model: model.name,
    data,
    usage: usage(tokens),
  };
}

export async function handleRerank(ctx: SimContext, raw: unknown): Promise<unknown> {
  const body = validate(rerankSchema, raw);
  const model = resolveRequestModel(ctx, body.model);
  const q = await ctx.tokenizer.encodeAsync(body.query);
  const texts = body.documents.map((d) => (typeof d === "string" ? d : d.text));
  const docs = await encodeAll(ctx, texts);
  let tokens = 0;
  const results = texts.map((text, index) => {
    const ids = docs[index]!;
    tokens += q.length + ids.length;
    return { index, document: { text }, relevance_score: overlap(q, ids) };
  });
  results.sort((a, b) => b.relevance_score - a.relevance_score || a.index - b.index);
  const topN = body.top_n && body.top_n > 0 ? body.top_n : results.length;
  return {
    id: `rerank-${newRequestHex()}`,
    model: model.name,
    usage: { total_tokens: tokens },
    results: results.slice(0, topN),
  };
}
