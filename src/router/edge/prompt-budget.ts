// Long prompts at the router's edge: counted off the event loop, refused early when they cannot fit.
// Routing needs at most `max_model_len` tokens, and tokenising a megabyte prompt in one go held the
// loop for seconds. So long generation prompts are tokenised here with the engine's own tokenizer in
// slices between turns of the loop, first held against a lower bound on their token count (words), a
// prompt that cannot fit gets vLLM 0.32's 400 at once (src/http/context-length.ts), and one that fits
// is routed by those ids. Why words and not characters, and which release's rules:
// docs/router.md#long-prompts.
import { resolveModel } from "../../models/profiles.js";
import { contextLengthError, type ContextAsk } from "../../http/context-length.js";
import { tokenizerForModel, tokenCountFloorAsync, type Tokenizer } from "../../tokenizer/index.js";
import { type ChatMessage } from "../../protocol/chat-messages.js";
import { WorkCancelled, type Cancellable } from "../../eventloop/turns.js";
import { logger } from "../../obs/log.js";
import type { RouterConfig } from "../config/config.js";
import type { EngineRegistry } from "../engines/engine-registry.js";
import type { ModelCard } from "../engines/engine-record.js";
import { routingInput, type Endpoint, type RoutingInput } from "../request/endpoints.js";

const log = logger("router.prompt");

/** prompts up to this many characters are left as they are (routing tokenises them in well under 1 ms) */
export const PROMPT_CHECK_CHARS = 32_768;
const MAX_TOKENIZERS = 1024;
/** texts longer than this are held against a floor on their count before they are counted (the size
 * from which exact counting moves to the tokenizer's worker thread and costs tenths of a second) */
export const FLOOR_FIRST_CHARS = 262_144;

/** Characters of the prompt text, without building it. */
function promptChars(input: RoutingInput): number {
  let n = 0;
  if (input.messages) {
    for (const m of input.messages) {
      const c = (m as { content?: unknown } | null)?.content;
      if (typeof c === "string") n += c.length;
      else if (Array.isArray(c))
        for (const part of c) {
          const t = (part as { text?: unknown } | null)?.text;
          if (typeof t === "string") n += t.length;
        }
    }
    return n;
  }
  const p = input.prompt;
  if (typeof p === "string") return p.length;
  if (Array.isArray(p)) for (const x of p) if (typeof x === "string") n += x.length;
  return n;
}

/** The output budget the request asks, and the field vLLM names when refusing it. */
type OutputAsk = Pick<ContextAsk, "maxTokens" | "param">;

/** The output budget as vLLM reads it for the endpoint's body (null: none set). */
function maxTokensOf(ep: Endpoint, chat: boolean, obj: Record<string, unknown>): OutputAsk {
  if (ep.prompt === "responses")
    return { maxTokens: numberOr(obj.max_output_tokens, null), param: "max_output_tokens" };
  // vLLM 0.32's token-in generate serves any max_tokens, cut to the room left: only the prompt counts
  if (ep.prompt === "token-ids") return { maxTokens: null, param: "max_tokens" };
  if (!chat) return { maxTokens: numberOr(obj.max_tokens, 16), param: "max_tokens" };
  // vLLM hands an Anthropic max_tokens to its chat as max_completion_tokens
  if (ep.prompt === "messages")
    return { maxTokens: numberOr(obj.max_tokens, null), param: "max_completion_tokens" };
  if (typeof obj.max_completion_tokens === "number")
    return { maxTokens: obj.max_completion_tokens, param: "max_completion_tokens" };
  return { maxTokens: numberOr(obj.max_tokens, null), param: "max_tokens" };
}

export class PromptBudget {
  private readonly tokenizers = new Map<string, Tokenizer | null>();

  constructor(
    private readonly registry: EngineRegistry,
    private readonly config: () => RouterConfig,
  ) {}

  /** Forgets the tokenizer choices (a reload may add tokenizer folders). */
  reset(): void {
    this.tokenizers.clear();
  }

  /**
   * Loads the tokenizers of an engine's models now (at discovery), not on a first request. (The worker
   * thread that counts prompts over 256K characters loads its own copy on first use, ~1 s once: its
   * ~120 MiB are paid only by routers that see such prompts.)
   */
  warm(cards: readonly ModelCard[]): void {
    for (const c of cards) this.tokenizerFor(c.id, c);
  }

  /**
   * Checks a generation prompt that is long enough to matter. Returns undefined when there is
   * nothing to do (short, not a prompt path, no tokenizer), else a promise of the first prompt's ids
   * for routing; throws (or rejects with) vLLM's 400 when the prompt cannot fit. `since`: when the
   * request's work began, its place in the line of sliced work (src/eventloop/turns.ts). Once the
   * client's `connection` is destroyed (the client went away), the counting rejects with WorkCancelled
   * at its next slice instead of running the rest for nobody.
   */
  check(
    ep: Endpoint,
    model: string,
    obj: Record<string, unknown>,
    since: number,
    connection: { readonly destroyed: boolean },
  ): Promise<number[]> | undefined {
    // generation prompts only: the tokenizer and render routes answer without a context to fit in
    if (!ep.generates || ep.prompt === "none") return undefined;
    const input = routingInput(ep, obj);
    const chat = input.messages !== undefined;
    if (!chat && input.prompt === undefined) return undefined;
    const ids = !chat && Array.isArray(input.prompt) && typeof input.prompt[0] !== "string";
    // the common case, a short text prompt, costs a length sum and nothing else
    if (!ids && promptChars(input) <= PROMPT_CHECK_CHARS) return undefined;
    const maxLen = this.registry.maxModelLen(model);
    const out = maxTokensOf(ep, chat, obj);
    if (ids) {
      if (maxLen !== undefined) this.checkIdPrompts(input.prompt, maxLen, out);
      return undefined;
    }
    const tk = this.tokenizerFor(model);
    if (!tk) return undefined;
    return this.count(tk, input, obj, maxLen, out, since, {
      get cancelled() {
        return connection.destroyed;
      },
    });
  }

  /** Token-id prompts need no tokenizer: their length is their count. */
  private checkIdPrompts(p: unknown, maxLen: number, out: OutputAsk): void {
    if (!Array.isArray(p) || p.length === 0) return;
    const lists = typeof p[0] === "number" ? [p] : Array.isArray(p[0]) ? p : [];
    for (const ids of lists) {
      const err = contextLengthError({
        maxModelLen: maxLen,
        promptTokens: (ids as unknown[]).length,
        ...out,
      });
      if (err) throw err;
    }
  }

  private async count(
    tk: Tokenizer,
    input: RoutingInput,
    obj: Record<string, unknown>,
    maxLen: number | undefined,
    out: OutputAsk,
    since: number,
    owner: Cancellable,
  ): Promise<number[]> {
    // routing needs no more than the context's tokens: the rest is counted, not kept
    const keep = maxLen ?? Infinity;
    const prompt = promptTexts(tk, input, obj);
    if (!prompt) return [];
    // every slice of this request's counting keeps the request's place in line (src/eventloop/turns.ts)
    // a prompt too long to count cheaply is first held against a floor on its count: one that
    // cannot fit by the floor alone is refused without the CPU exact counting costs (0.4 s for 5 MiB)
    if (maxLen !== undefined)
      for (const t of prompt.texts) {
        if (t.length <= FLOOR_FIRST_CHARS) continue;
        const floor = await tokenCountFloorAsync(t, since, owner);
        if (floor > maxLen)
          throw contextLengthError({
            maxModelLen: maxLen,
            promptTokens: floor,
            ...out,
            text: true,
            floor: true,
          })!;
      }
    const counted: Array<{ count: number; ids: number[] }> = [];
    try {
      for (const t of prompt.texts)
        counted.push(await tk.countAsync(t, prompt.addSpecialTokens, keep, since, owner));
    } catch (err) {
      if (err instanceof WorkCancelled) throw err;
      log.debug({ err: (err as Error).message }, "prompt not counted");
      return [];
    }
    if (maxLen !== undefined) {
      for (const c of counted) {
        const err = contextLengthError({ maxModelLen: maxLen, promptTokens: c.count, ...out, text: true });
        if (err) throw err;
      }
    }
    return counted[0]?.ids ?? [];
  }

  /**
   * The engine's tokenizer for a served model when the router has it: the sim's (src/tokenizer) for
   * a model the sim knows, by the model's own name or its card's parent/root; none when the routing
   * config names a tokenizer folder for it (cache-aware routing then uses that folder's tokenizer).
   */
  private tokenizerFor(model: string, known?: ModelCard): Tokenizer | null {
    const have = this.tokenizers.get(model);
    if (have !== undefined) return have;
    const card = known ?? this.registry.modelCard(model);
    const parent = typeof card?.parent === "string" ? card.parent : undefined;
    const root = parent ?? (typeof card?.root === "string" ? card.root : undefined);
    const dirs = this.config().routing.tokenizers;
    let tk: Tokenizer | null = null;
    if (dirs[model] === undefined && (root === undefined || dirs[root] === undefined)) {
      for (const id of [model, root]) {
        if (id === undefined) continue;
        try {
          tk = tokenizerForModel(resolveModel(id));
          break;
        } catch {
          // not a model the sim knows
        }
      }
    }
    if (this.tokenizers.size >= MAX_TOKENIZERS) this.tokenizers.clear();
    this.tokenizers.set(model, tk);
    return tk;
  }
}

/**
 * The texts a prompt is counted as: a chat's rendered template (which holds the BOS), or a
 * completion's string prompts; undefined for a conversation the template cannot render (the engine
 * answers that with its own 400).
 */
function promptTexts(
  tk: Tokenizer,
  input: RoutingInput,
  obj: Record<string, unknown>,
): { texts: string[]; addSpecialTokens: boolean } | undefined {
  if (!input.messages) {
    const p = input.prompt;
    return {
      texts: typeof p === "string" ? [p] : (p as unknown[]).filter((x): x is string => typeof x === "string"),
      addSpecialTokens: typeof obj.add_special_tokens === "boolean" ? obj.add_special_tokens : true,
    };
  }
  const gen = typeof obj.add_generation_prompt === "boolean" ? obj.add_generation_prompt : true;
  try {
    return {
      texts: [tk.applyChatTemplate(input.messages as ChatMessage[], { addGenerationPrompt: gen })],
      addSpecialTokens:
        typeof obj.add_special_tokens === "boolean"
          ? obj.add_special_tokens
          : (input.addSpecialTokens ?? false),
    };
  } catch (err) {
    log.debug({ err: (err as Error).message }, "prompt not counted");
    return undefined;
  }
}

function numberOr<T>(v: unknown, d: T): number | T {
  return typeof v === "number" ? v : d;
}
