// One engine request for the routes that are not /v1/completions or /v1/chat/completions: Anthropic
// Messages, the Responses API, batched chats, token-in/token-out generate and SageMaker invocations.
// vLLM runs them all through its chat/completions serving, so here they build the engine request the
// way completions.ts does (same checks, same greedy chain, same seed folding): a conversation sent as a
// Message, a Response or a chat gets the same tokens, and a router sees the same prefix hits.
//
// It also applies stop strings, which the chat path accepts and ignores: the greedy chain is known up
// front, so the walk finds where a stop string would first complete and the engine is told to end
// there, finishing "stop" with the tokens up to that point generated and counted, as vLLM does.
import type { EngineRequest, FinishReason, RequestTimings } from "../../engine/types.js";
import { contextLengthError, outputBudget, type OutputParam } from "../../http/context-length.js";
import { HttpError } from "../../http/errors.js";
import { seedFromString } from "../../random/rng.js";
import { contextRules, type ModelChoice, type SimContext } from "./context.js";
import { GreedyChain } from "../outputs/greedy.js";
import { MAX_IN_FLIGHT } from "../runtime/runtime.js";
import type { RequestSink } from "../protocol/sink.js";

export interface GenerationSpec {
  promptIds: readonly number[];
  model: ModelChoice;
  /** null: vLLM's default, the room left in the context (max_model_len − prompt); never more than that room */
  maxTokens: number | null;
  minTokens?: number;
  ignoreEos?: boolean;
  priority?: number;
  cacheSalt?: string | null;
  /** null: vLLM's default, which samples; 0 makes every choice of a request the same answer */
  temperature?: number | null;
  /** the choice's index within an n > 1 request */
  choice?: number;
  /** vLLM's `stop`: the text ends before the first one to appear, finish_reason "stop" */
  stop?: readonly string[];
  /**
   * this request's share of the up-front stop search (STOP_SEARCH_WORK by default): a batch splits
   * it among its conversations, whose searches all run in one turn of the event loop
   */
  stopSearchWork?: number;
}

/** vLLM's `stop` as a request writes it (one string, a list, or none), as the list a spec takes. */
export function stopStrings(stop: string | readonly string[] | null | undefined): readonly string[] {
  return stop === null || stop === undefined ? [] : typeof stop === "string" ? [stop] : stop;
}

/** The SamplingParams fields a chat body and a token-in request's sampling_params name alike. */
export interface SamplingFields {
  min_tokens?: number | null;
  ignore_eos?: boolean | null;
  temperature?: number | null;
  stop?: string | readonly string[] | null;
}

/** The request fields vLLM's SamplingParams checks when it is built. */
export interface CheckedSampling {
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  /** token id (as a string key) → bias */
  logit_bias?: Record<string, number> | null;
}

/** A Python float as vLLM's f-strings print one (3 → 3.0). */
function pyFloat(x: number): string {
  return Number.isInteger(x) ? x.toFixed(1) : String(x);
}

/**
 * SamplingParams' own refusals, in its order and with its texts: these come after the request's
 * schema accepted it, so they are BadRequestError with vLLM's param (null where it names none), and
 * a request vLLM refuses here must not be served (n: 0 would start no choice at all).
 */
export function checkSampling(s: CheckedSampling, vocabSize?: number): void {
  if (s.logit_bias) checkLogitBias(s.logit_bias, vocabSize);
  const n = s.n ?? 1;
  if (n < 1) throw new HttpError(400, `n must be at least 1, got ${n}.`);
  const range = (name: string, v: number | null | undefined) => {
    if (v !== null && v !== undefined && !(v >= -2 && v <= 2))
      throw new HttpError(400, `${name} must be in [-2, 2], got ${pyFloat(v)}.`);
  };
  range("presence_penalty", s.presence_penalty);
  range("frequency_penalty", s.frequency_penalty);
  const rep = s.repetition_penalty;
  if (rep !== null && rep !== undefined && rep <= 0)
    throw new HttpError(400, `repetition_penalty must be greater than zero, got ${pyFloat(rep)}.`);
  const t = s.temperature;
  if (t !== null && t !== undefined) {
    if (t < 0)
      throw new HttpError(
        400,
        `temperature must be non-negative, got ${pyFloat(t)}. (parameter=temperature, value=${pyFloat(t)})`,
        "temperature",
      );
    if (t > 2)
      throw new HttpError(
        400,
        `temperature must be in [0, 2], got ${pyFloat(t)}. (parameter=temperature, value=${pyFloat(t)})`,
        "temperature",
      );
  }
  const p = s.top_p;
  if (p !== null && p !== undefined && !(p > 0 && p <= 1))
    throw new HttpError(
      400,
      `top_p must be in (0, 1], got ${pyFloat(p)}. (parameter=top_p, value=${pyFloat(p)})`,
      "top_p",
    );
  const k = s.top_k;
  if (k !== null && k !== undefined && k < -1)
    throw new HttpError(400, `top_k must be 0 (disable), or at least 1, got ${k}.`);
  const m = s.min_p;
  if (m !== null && m !== undefined && !(m >= 0 && m <= 1))
    throw new HttpError(400, `min_p must be in [0, 1], got ${pyFloat(m)}.`);
  // temperature 0 is greedy, where n > 1 would be n copies of one answer; a temperature above 0 is
  // first raised to SamplingParams' floor of 0.01, so only 0 itself is greedy here
  if (t !== null && t !== undefined && t <= 0 && n > 1)
    throw new HttpError(400, `n must be 1 when using greedy sampling, got ${n}.`);
}

/**
 * vLLM's two logit_bias refusals: keys Python's int() cannot read (SamplingParams.from_optional),
 * then ids outside the model's vocabulary (SamplingParams.verify, given the vocabulary).
 */
function checkLogitBias(bias: Record<string, number>, vocabSize: number | undefined): void {
  const bad: string[] = [];
  const outside: number[] = [];
  for (const key of Object.keys(bias)) {
    const id = pyInt(key);
    if (id === null) bad.push(key);
    else if (vocabSize !== undefined && (id < 0 || id >= vocabSize)) outside.push(id);
  }
  if (bad.length > 0) {
    const value = `[${bad.map(pyStr).join(", ")}]`;
    throw new HttpError(
      400,
      `logit_bias contains key(s) that cannot be converted to integer token IDs: ${value} ` +
        `(parameter=logit_bias, value=${value})`,
      "logit_bias",
    );
  }
  if (outside.length > 0) {
    const value = `[${outside.join(", ")}]`;
    throw new HttpError(
      400,
      `token_id(s) ${value} in logit_bias contain out-of-vocab token ids. Vocabulary size: ${vocabSize} ` +
        `(parameter=logit_bias, value=${value})`,
      "logit_bias",
    );
  }
}

/** Python's int() of a string: surrounding space, a sign, digits with single underscores between. */
function pyInt(s: string): number | null {
  const m = /^\s*([+-]?)(\d+(?:_\d+)*)\s*$/.exec(s);
  return m ? Number(m[1]! + m[2]!.replaceAll("_", "")) : null;
}

/** A string as Python's repr writes it: single quotes unless it holds one and no double quote. */
function pyStr(s: string): string {
  const q = s.includes("'") && !s.includes('"') ? '"' : "'";
  const body = s
    .replaceAll("\\", "\\\\")
    .replaceAll("\n", "\\n")
    .replaceAll("\r", "\\r")
    .replaceAll("\t", "\\t")
    .replaceAll(q, `\\${q}`);
  return `${q}${body}${q}`;
}

/** Those fields as a spec takes them, vLLM's defaults filled in. */
export function samplingSpec(
  s: SamplingFields,
): Pick<GenerationSpec, "minTokens" | "ignoreEos" | "temperature" | "stop"> {
  return {
    minTokens: s.min_tokens ?? 0,
    ignoreEos: s.ignore_eos ?? false,
    temperature: s.temperature ?? null,
    stop: stopStrings(s.stop),
  };
}

export interface GenerationResult {
  reason: FinishReason;
  /** the stop string that ended the answer (vLLM's stop_reason), or null */
  stopString: string | null;
  /** the answer's text, cut before the stop string */
  text: string;
  /** every output token id, the stop string's included (EOS included, as vLLM's are) */
  ids: number[];
  timings: RequestTimings;
}

export interface GenerationEvents {
  /**
   * New output: the text that may be shown (never past a stop string), the new token ids, and how
   * the answer ends when these are its last tokens (the engine reports the end separately, after
   * them: a stream that wants the reason on its last token's event takes it from here).
   */
  onOutput?(text: string, ids: readonly number[], finish: FinishReason | null): void;
  onDone(result: GenerationResult): void;
}

/**
 * Output tokens searched for stop strings before the request starts (about a millisecond); past
 * them the text is searched as it is generated, and a match there aborts the engine request.
 */
export const STOP_SEARCH_TOKENS = 4096;

/**
 * What the up-front search may cost, in (token, stop string) checks: STOP_SEARCH_TOKENS for up to 8
 * stop strings, fewer tokens for more. Counted in tokens alone, a list of 50,000 stop strings held
 * the event loop 150 ms, and a batch of 1,024 conversations with one stop string 630 ms.
 */
export const STOP_SEARCH_WORK = STOP_SEARCH_TOKENS * 8;

/** Where a stop string first completes in the output: token index and character offset. */
interface Cut {
  tokenIndex: number;
  charOffset: number;
  stop: string;
}

/**
 * Finds the first stop string to complete in text fed a token's piece at a time. Only a tail as long
 * as the longest stop string is kept and searched, so feeding is linear in the text's length.
 */
class StopScanner {
  private tail = "";
  /** offset of tail[0] in the whole text */
  private base = 0;
  private readonly longest: number;

  constructor(private readonly stops: readonly string[]) {
    // not Math.max(...): a spread of some 100,000 strings overflows the stack
    let longest = 0;
    for (const s of stops) if (s.length > longest) longest = s.length;
    this.longest = longest;
  }

  feed(piece: string, tokenIndex: number): Cut | null {
    const from = this.tail.length;
    this.tail += piece;
    let best: Cut | null = null;
    for (const s of this.stops) {
      const at = this.tail.indexOf(s, Math.max(0, from - s.length + 1));
      if (at >= 0 && (!best || this.base + at < best.charOffset))
        best = { tokenIndex, charOffset: this.base + at, stop: s };
    }
    if (this.tail.length > this.longest) {
      this.base += this.tail.length - this.longest;
      this.tail = this.tail.slice(-this.longest);
    }
    return best;
  }
}

/** How a route's output budget is named and its prompt came (see src/http/context-length.ts). */
export interface OutputAsk {
  /** default max_tokens */
  param?: OutputParam;
  /** the prompt came as text (a conversation, a string), not as token ids */
  text?: boolean;
}

/**
 * vLLM's checks before a request reaches the engine, in completions.ts's order: sleeping, priority
 * without priority scheduling, the context (max_tokens, prompt length, output budget), empty prompt,
 * then the in-flight cap, which vLLM 0.32 counts as an admission rejection.
 */
export function checkAdmission(
  ctx: SimContext,
  prompts: ReadonlyArray<readonly number[]>,
  maxTokens: number | null,
  priority = 0,
  requests = prompts.length,
  ask: OutputAsk = {},
): void {
  if (ctx.state.sleepState !== "awake")
    throw new HttpError(503, "the engine is sleeping; POST /wake_up first");
  if (priority !== 0 && ctx.options.schedulingPolicy !== "priority")
    throw new HttpError(400, `Got priority ${priority} but Priority scheduling is not enabled.`, "priority");
  const rules = contextRules(ctx);
  for (const ids of prompts) {
    const err = contextLengthError({
      maxModelLen: ctx.engineConfig.maxModelLen,
      promptTokens: ids.length,
      maxTokens,
      param: ask.param,
      text: ask.text,
      rules,
    });
    if (err) throw err;
    if (ids.length === 0) throw new HttpError(400, "The prompt cannot be empty.", "prompt");
  }
  if (ctx.runtime.inFlight + requests > MAX_IN_FLIGHT) {
    ctx.metrics.admissionRejected("max_num_queued_reqs");
    throw new AdmissionRefused();
  }
}

const IN_FLIGHT_REFUSAL = `the sim holds at most ${MAX_IN_FLIGHT} requests in flight; retry later`;

/** The cap's 503, already counted in vllm:admission_rejections. */
export class AdmissionRefused extends HttpError {
  constructor() {
    super(503, IN_FLIGHT_REFUSAL);
  }
}

/**
 * Whether an error is the in-flight cap's 503 that completions.ts raised (it does not count it): the
 * server counts those, so that chat and completions refusals reach vllm:admission_rejections too.
 */
export function uncountedRefusal(err: unknown): boolean {
  return (
    err instanceof HttpError &&
    !(err instanceof AdmissionRefused) &&
    err.status === 503 &&
    err.message === IN_FLIGHT_REFUSAL
  );
}

/** Token ids in [0, vocab): vLLM's 400 otherwise (its input processor's check, which names no param). */
export function checkTokenIds(ctx: SimContext, ids: readonly number[]): void {
  const vocab = ctx.tokenizer.vocabSize;
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocab)
      throw new HttpError(400, `Token id ${id} is out of vocabulary`);
  }
}

export class Generation implements RequestSink {
  readonly engineId: string;
  readonly maxTokens: number;
  private readonly request: EngineRequest;
  private cut: Cut | null = null;
  /** stop strings still to be searched for, in tokens past the up-front search as they come */
  private liveScan: StopScanner | null = null;
  /** the first output token the live scan reads (the up-front search read those before it) */
  private liveFrom = 0;
  /** the cut was found as the tokens came: the engine request was aborted there */
  private liveCut = false;
  private text = "";
  private shown = 0;
  private readonly ids: number[] = [];
  private done = false;
  private readonly engineMax: number;

  constructor(
    private readonly ctx: SimContext,
    spec: GenerationSpec,
    private readonly events: GenerationEvents,
  ) {
    const prompt = spec.promptIds;
    const maxTokens = outputBudget(ctx.engineConfig.maxModelLen, prompt.length, spec.maxTokens);
    const ignoreEos = spec.ignoreEos ?? false;
    const minTokens = spec.minTokens ?? 0;
    const choice = spec.choice ?? 0;
    const chain = new GreedyChain(
      prompt,
      {
        seed: ctx.options.seed ^ seedFromString(spec.model.loraName ?? ""),
        choiceSalt: spec.temperature === 0 ? 0 : choice,
        pool: ctx.tokenizer.outputPool.ids,
        eosId: ctx.tokenizer.eosTokenId,
        meanLength: ctx.options.outputLenMean,
        minTokens,
        ignoreEos,
      },
      maxTokens,
    );
    const stops = (spec.stop ?? []).filter((s) => s.length > 0);
    if (stops.length > 0) {
      const searched = Math.floor((spec.stopSearchWork ?? STOP_SEARCH_WORK) / stops.length);
      this.findCut(chain, new StopScanner(stops), Math.min(maxTokens, chain.stopAfter), searched);
    }
    // the engine ends the answer where the stop string completes: at its EOS point unless EOS is
    // ignored, then by length (reported as "stop" below)
    const stopAfter = this.cut ? Math.min(chain.stopAfter, this.cut.tokenIndex + 1) : chain.stopAfter;
    const engineMax = this.cut && ignoreEos ? this.cut.tokenIndex + 1 : maxTokens;
    this.maxTokens = maxTokens;
    this.engineMax = engineMax;
    this.engineId = String(ctx.state.nextRequestNumber++);
    this.request = {
      requestId: this.engineId,
      promptTokenIds: prompt,
      maxTokens: engineMax,
      stopAfter,
      ignoreEos,
      minTokens,
      priority: spec.priority ?? 0,
      cacheSalt: spec.cacheSalt ?? null,
      loraName: spec.model.loraName,
      lora: spec.model.lora,
      arrivalTime: performance.now() / 1000,
      sampleToken: (i: number) => chain.token(i),
    };
  }

  /** Hands the request to the engine; `maxTokensParam` is what vllm:request_params_max_tokens sees. */
  submit(maxTokensParam = this.maxTokens): void {
    this.ctx.runtime.submit(this.request, this, maxTokensParam);
  }

  /** The client went away (or asked): the engine frees the request's blocks at once. */
  abort(): void {
    if (!this.done) this.ctx.runtime.abort(this.engineId);
  }

  get finished(): boolean {
    return this.done;
  }

  /** The stop string this answer ends with, when one completes before its EOS and max_tokens. */
  get stopString(): string | null {
    return this.cut?.stop ?? null;
  }

  private pieceOf(id: number): string {
    return this.ctx.tokenText.get(id) ?? this.ctx.tokenizer.decode([id], true);
  }

  /**
   * Walks the chain's output (already computed up to its EOS point) for the first stop string to
   * complete, so the engine is told to end there. Past `searched` tokens the walk would hold the
   * event loop too long: the rest is searched as the tokens come (onTokens).
   */
  private findCut(chain: GreedyChain, scan: StopScanner, upTo: number, searched: number): void {
    const limit = Math.min(upTo, STOP_SEARCH_TOKENS, searched);
    const eos = this.ctx.tokenizer.eosTokenId;
    for (let i = 0; i < limit; i++) {
      const id = chain.token(i);
      if (id === eos) return;
      this.cut = scan.feed(this.pieceOf(id), i);
      if (this.cut) return;
    }
    if (upTo > limit) {
      this.liveScan = scan;
      this.liveFrom = limit;
    }
  }

  onTokens(ids: readonly number[]): void {
    if (this.done) return;
    let piece = "";
    for (const id of ids) {
      const p = this.pieceOf(id);
      this.ids.push(id);
      piece += p;
      const i = this.ids.length - 1;
      if (this.liveScan && !this.cut && i >= this.liveFrom) {
        this.cut = this.liveScan.feed(p, i);
        if (this.cut) {
          // found only now: the engine request ends here (as an abort in its own metrics)
          this.liveCut = true;
          this.liveScan = null;
          this.ctx.runtime.abort(this.engineId);
        }
      }
    }
    this.text += piece;
    const visible = this.cut ? Math.min(this.text.length, this.cut.charOffset) : this.text.length;
    const delta = this.text.slice(this.shown, visible);
    this.shown = visible;
    this.events.onOutput?.(delta, ids, this.predictedFinish());
  }

  /** How the answer ends if the tokens so far are all of it: the engine's own rule (engine.ts). */
  private predictedFinish(): FinishReason | null {
    const n = this.ids.length;
    const r = this.request;
    if (this.cut && n === this.cut.tokenIndex + 1) return "stop";
    if (!r.ignoreEos && n >= r.stopAfter && n >= r.minTokens) return "stop";
    if (n >= this.engineMax) return "length";
    return null;
  }

  onFinished(reason: FinishReason, timings: RequestTimings): void {
    if (this.done) return;
    this.done = true;
    const cut = this.cut;
    const hitStop =
      cut !== null && (reason !== "abort" || this.liveCut) && this.ids.length >= cut.tokenIndex + 1;
    this.events.onDone({
      reason: hitStop ? "stop" : reason,
      stopString: hitStop ? cut.stop : null,
      text: hitStop ? this.text.slice(0, cut.charOffset) : this.text,
      ids: hitStop ? this.ids.slice(0, cut.tokenIndex + 1) : this.ids,
      timings,
    });
  }
}

/** Counts a request in vLLM's server_load from now until its response closes. */
export function trackLoad(ctx: SimContext, res: { once(event: "close", fn: () => void): unknown }): void {
  ctx.state.serverLoad++;
  res.once("close", () => ctx.state.serverLoad--);
}
