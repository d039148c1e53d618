// What cache-aware routing works out from a prompt before its decision, as one pure function of the
// request: its token ids (the model's tokenizer), its block hashes under each engine's scheme, its
// LMCache chunk hashes, and the prefix index's character-block ids. The router's loop does this itself
// for short prompts; for long ones at rate the prompt thread (prompt-thread.ts) runs it on a worker,
// where it gives the same values the loop would (the same tokenizer, memo and hash functions).
import { promptBlockIds, type RequestView } from "../../routing/index.js";
import type { BlockHashOptions } from "../../protocol/block-hashing.js";
import { chunkHashes } from "../../protocol/lmcache-chunks.js";
import { BlockHashMemo } from "./hash-memo.js";
import { blockEnds, hashedBlocks } from "./prompt-hashes.js";
import { requestTokenizerFor, type RequestTokenizer } from "./tokenizers.js";

/** The request as its prompt is read: what tokens() and the prefix index look at, and nothing more. */
export type PromptView = Pick<RequestView, "model" | "prompt" | "messages"> & {
  body: Record<string, unknown>;
};

/** One prompt's work, as the loop asks it of the worker. */
export interface PromptAsk {
  id: number;
  /** the tokenizers' configuration this was asked under (answers from an older one are dropped) */
  generation: number;
  /** the model's tokenizer, as requestTokenizerFor is given it: the model and its parent or root */
  tokenizer: { model: string; root: string | undefined };
  view: PromptView;
  /** per hash scheme: its key, its block size, and the options of the units it is hashed in */
  schemes: { key: string; blockSize: number; unit: number; opts: BlockHashOptions }[];
  /** LMCache chunk sizes to hash the prompt at, chained from `seed` */
  chunks: { tokens: number; seed: string }[];
  /** the prefix index's options */
  prefix: { blockChars: number; maxBlocks: number };
}

/** The worker's answer: the prompt's values, or why it has none (the loop then works them out). */
export interface PromptAnswer {
  id: number;
  generation: number;
  /** null: the prompt cannot be rendered for this model (as tokens() says) */
  tokens?: Int32Array | null;
  hashes?: { key: string; ids: BigUint64Array }[];
  chunks?: { tokens: number; hashes: BigUint64Array }[];
  prefix?: { ids: Float64Array; chars: number };
  error?: string;
  /** how long the worker worked on it (ms): the pace the loop expects of the next asks */
  workMs?: number;
}

/** the request view's body fields tokens() reads */
const BODY_FIELDS = ["add_generation_prompt", "add_special_tokens", "chat_template_kwargs"] as const;

/** what of a request the worker is sent: the prompt and the body fields that shape its tokens */
export function promptView(req: RequestView): PromptView {
  const body: Record<string, unknown> = {};
  for (const f of BODY_FIELDS) if (req.body?.[f] !== undefined) body[f] = req.body[f];
  return { model: req.model, prompt: req.prompt, messages: req.messages, body };
}

/** Characters the prompt holds, cheaply (no rendering): which prompts are worth a worker's time. */
export function promptChars(req: Pick<RequestView, "prompt" | "messages">): number {
  const messages = req.messages;
  if (Array.isArray(messages)) {
    let n = 0;
    for (const m of messages as { content?: unknown }[]) {
      const c = m?.content;
      if (typeof c === "string") n += c.length;
      else if (Array.isArray(c))
        for (const part of c as { text?: unknown }[])
          if (typeof part?.text === "string") n += part.text.length;
    }
    return n;
  }
  const p = req.prompt;
  if (typeof p === "string") return p.length;
  if (Array.isArray(p) && typeof p[0] === "string") return (p[0] as string).length;
  // token ids: about as many characters a token as English text
  if (Array.isArray(p) && typeof p[0] === "number") return p.length * 4;
  if (Array.isArray(p) && Array.isArray(p[0])) return (p[0] as unknown[]).length * 4;
  return 0;
}

/** tokenizers a worker keeps (a fleet serving more models starts them over) */
const MAX_TOKENIZERS = 64;

/** The worker's state: each model's tokenizer and the shared prefixes' block hashes. */
export class PromptWorkshop {
  private readonly tokenizers = new Map<string, RequestTokenizer | null>();
  private readonly memo = new BlockHashMemo();

  constructor(private dirs: Record<string, string>) {}

  /** new tokenizer folders: every tokenizer is loaded again */
  configure(dirs: Record<string, string>): void {
    this.dirs = dirs;
    this.tokenizers.clear();
  }

  /** the model's tokenizer, loaded on first use (a second or so for the big vocabularies) */
  tokenizer(model: string, root: string | undefined): RequestTokenizer | null {
    const key = `${model}\u0000${root ?? ""}`;
    let tk = this.tokenizers.get(key);
    if (tk === undefined) {
      if (this.tokenizers.size >= MAX_TOKENIZERS) this.tokenizers.clear();
      try {
        tk = requestTokenizerFor(model, root, this.dirs);
      } catch {
        tk = null;
      }
      this.tokenizers.set(key, tk);
    }
    return tk;
  }

  /** the prompt's values, as the loop would work them out (cache-routing.ts, prompt-hashes.ts) */
  work(a: PromptAsk): PromptAnswer {
    const tk = this.tokenizer(a.tokenizer.model, a.tokenizer.root);
    const view = a.view as RequestView;
    const p = promptBlockIds(view, a.prefix.blockChars, a.prefix.maxBlocks);
    const prefix = { ids: Float64Array.from(p.ids), chars: p.chars };
    // no tokenizer here where the loop has one (the loop asks only then): the loop works it out
    if (tk === null) return { id: a.id, generation: a.generation, error: "no tokenizer" };
    const tokens = tk.tokens(view);
    if (tokens === null) return { id: a.id, generation: a.generation, tokens: null, prefix };
    // a prompt of ids is the client's: one that is not an int32 goes back as it is (the loop hashes it)
    for (let i = 0; i < tokens.length; i++)
      if ((tokens[i]! | 0) !== tokens[i])
        return { id: a.id, generation: a.generation, error: "not token ids" };
    const hashes = a.schemes.map((s) => {
      const units = this.memo.ids(tokens, hashedBlocks(tokens, s.blockSize) * s.blockSize, s.opts);
      return { key: s.key, ids: BigUint64Array.from(blockEnds(units, s)) };
    });
    const chunks = a.chunks.map((c) => ({
      tokens: c.tokens,
      hashes: chunkHashes(tokens, Math.floor(tokens.length / c.tokens), {
        chunkTokens: c.tokens,
        hashSeed: c.seed,
      }),
    }));
    return { id: a.id, generation: a.generation, tokens: Int32Array.from(tokens), hashes, chunks, prefix };
  }
}
