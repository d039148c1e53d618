// The tokenizer contract shared by the sim (prompt counting, /tokenize, /detokenize, streamed text)
// and the router (exact KV-aware routing needs the same token ids the engine computes).
import type { Cancellable } from "../eventloop/turns.js";
import type { ChatMessage } from "../protocol/chat-messages.js";
import { UnsupportedError } from "../errors/index.js";

export interface ChatTemplateOptions {
  addGenerationPrompt: boolean;
  /** Qwen3's `enable_thinking` chat-template kwarg; undefined behaves like true (vLLM's default). */
  enableThinking?: boolean;
  /**
   * vLLM's `continue_final_message`: the last message is left open (no end-of-turn marker after its
   * content) so the model continues it; never together with addGenerationPrompt.
   */
  continueFinalMessage?: boolean;
}

export interface Tokenizer {
  readonly family: string;
  /** the model's real vocabulary size: every id below it is accepted as a prompt token */
  readonly vocabSize: number;
  readonly eosTokenId: number;
  readonly bosTokenId: number | null;
  /**
   * false when the model ships no chat template (vLLM answers chat requests with 400); the
   * tokenizer still renders a documented fallback so callers may choose to serve chat anyway.
   */
  readonly hasChatTemplate: boolean;
  /** special and added tokens recognised in text, content -> id */
  readonly addedTokens: ReadonlyMap<string, number>;
  /**
   * true when text without added tokens may be cut at safeCut points (family-tokenizer.ts) and its
   * pieces encoded apart, their ids joined being the text's: the built-in families and byte-level folders
   */
  readonly sliceable?: boolean;
  /** added tokens are always recognised in text; addSpecialTokens only controls the BOS (default true) */
  encode(text: string, addSpecialTokens?: boolean): number[];
  /**
   * The same ids as `encode`, computed in slices between turns of the event loop when the text is
   * long, so no prompt holds the loop for more than a couple of milliseconds at a time.
   */
  encodeAsync(text: string, addSpecialTokens?: boolean): Promise<number[]>;
  /** encodeAsync's token count, keeping only the first `keep` ids (less to allocate for huge prompts) */
  countAsync(
    text: string,
    addSpecialTokens: boolean,
    keep: number,
    /** when the request's work began (performance.now()), if earlier than this call: its place in line (eventloop/turns.ts) */
    since?: number,
    /** what the count is for: once cancelled, it rejects with WorkCancelled at its next turn (eventloop/turns.ts) or worker chunk (offload.ts) */
    owner?: Cancellable,
  ): Promise<{ count: number; ids: number[] }>;
  /**
   * Lossless byte-level decode. Ids outside the encoder's table (or negative) decode to "" and
   * never throw. skipSpecialTokens (default false, as HF's decode) drops special tokens.
   */
  decode(ids: readonly number[], skipSpecialTokens?: boolean): string;
  /** HF-style token strings (byte-level, "Ġ" for a space) for /tokenize's token_strs; unknown ids give "" */
  tokenStrings(ids: readonly number[]): string[];
  applyChatTemplate(messages: readonly ChatMessage[], opts: ChatTemplateOptions): string;
  /** the template text encoded with added tokens recognised and no extra BOS, as vLLM does */
  encodeChat(messages: readonly ChatMessage[], opts: ChatTemplateOptions): number[];
  /** encodeChat in slices between turns of the event loop (see encodeAsync) */
  encodeChatAsync(messages: readonly ChatMessage[], opts: ChatTemplateOptions): Promise<number[]>;
  /** countAsync of the rendered chat template */
  countChatAsync(
    messages: readonly ChatMessage[],
    opts: ChatTemplateOptions,
    keep: number,
  ): Promise<{ count: number; ids: number[] }>;
  /**
   * Tokens suitable as generated output: each decodes to a clean word with a leading space;
   * texts[i] is the decode of ids[i] alone, and decoding any sequence of pool ids equals the
   * concatenation of their texts.
   */
  readonly outputPool: { ids: Int32Array; texts: string[] };
}

/** A conversation the template cannot render (vLLM answers 400). */
export class ChatTemplateError extends UnsupportedError {
  override name = "ChatTemplateError";
}
