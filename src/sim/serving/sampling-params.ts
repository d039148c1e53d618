// vLLM's SamplingParams as vLLM 0.32 resolves and writes it: render's `sampling_params` (the
// GenerateRequest a gateway hands to /inference/v1/generate) and the sampling fields a Responses
// answer echoes. A gateway that compares or forwards these must see vLLM's keys, no more and no fewer.
//
// Which keys appear follows from how vLLM encodes the struct (msgspec, omit_defaults), read off a
// vLLM 0.32 engine's renders: a field is left out when its value is the default object itself. So a
// field the request path always sets to a fresh value is always written (the float penalties,
// temperature, top_p, min_p, the stop lists, bad_words), while one left at its default or set to a
// small integer, a bool or None equal to it is not (n 1, top_k 0, seed None, ignore_eos false,
// max_tokens 16, min_tokens 0, logprobs None, the detokenizer switches at their defaults). Greedy
// sampling resets top_p, top_k and min_p to their defaults, so they drop out too.
import { checkSampling, stopStrings } from "./engine-request.js";

/** What a render knows of the request's sampling, in vLLM's SamplingParams terms. */
export interface Sampling {
  n?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  min_p?: number | null;
  seed?: number | null;
  stop?: string | readonly string[] | null;
  stop_token_ids?: readonly number[] | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  repetition_penalty?: number | null;
  ignore_eos?: boolean | null;
  min_tokens?: number | null;
  /** the number of logprobs per output token (chat's logprobs/top_logprobs already folded in) */
  logprobs?: number | null;
  prompt_logprobs?: number | null;
  skip_special_tokens?: boolean | null;
  spaces_between_special_tokens?: boolean | null;
  include_stop_str_in_output?: boolean | null;
  logit_bias?: Record<string, number> | null;
  allowed_token_ids?: readonly number[] | null;
  bad_words?: readonly string[] | null;
}

/** SamplingParams' floor on a sampling temperature: anything lower but above 0 is raised to it */
export const MIN_TEMPERATURE = 0.01;
/** below this a temperature is greedy sampling */
const GREEDY_EPSILON = 1e-5;
/** SamplingParams' default max_tokens, which it leaves out when a request resolves to it */
const DEFAULT_MAX_TOKENS = 16;

/** RequestOutputKind: a stream's engine outputs are deltas, a whole answer's only the final one */
const OUTPUT_KIND_DELTA = 1;
const OUTPUT_KIND_FINAL_ONLY = 2;

export interface ResolvedSampling {
  temperature: number;
  top_p: number;
  top_k: number;
  min_p: number;
  /** top_p, top_k and min_p were reset to their defaults (greedy sampling) */
  greedy: boolean;
}

/** SamplingParams' own resolution of the sampling knobs: the temperature floor, greedy's resets. */
export function resolveSampling(s: Sampling): ResolvedSampling {
  let temperature = s.temperature ?? 1.0;
  if (temperature > 0 && temperature < MIN_TEMPERATURE) temperature = MIN_TEMPERATURE;
  const greedy = temperature < GREEDY_EPSILON;
  return {
    temperature,
    top_p: greedy ? 1.0 : (s.top_p ?? 1.0),
    top_k: greedy ? 0 : (s.top_k ?? 0),
    min_p: greedy ? 0.0 : (s.min_p ?? 0.0),
    greedy,
  };
}

export interface DumpOptions {
  /** the request streams: its engine outputs are deltas */
  stream: boolean;
  /** SamplingParams.extra_args (a request's kv_transfer_params ride there); null: not set */
  extraArgs?: Record<string, unknown> | null;
}

/** The SamplingParams a render answers, in vLLM's field order, with vLLM 0.32's keys only. */
export function samplingParams(s: Sampling, maxTokens: number, o: DumpOptions): Record<string, unknown> {
  // vLLM builds the SamplingParams to render them, so its refusals are render's too
  checkSampling(s);
  const r = resolveSampling(s);
  const out: Record<string, unknown> = {};
  const n = s.n ?? 1;
  if (n !== 1) out.n = n;
  out.presence_penalty = s.presence_penalty ?? 0.0;
  out.frequency_penalty = s.frequency_penalty ?? 0.0;
  out.repetition_penalty = s.repetition_penalty ?? 1.0;
  out.temperature = r.temperature;
  if (!r.greedy) out.top_p = r.top_p;
  if (r.top_k !== 0) out.top_k = r.top_k;
  if (!r.greedy) out.min_p = r.min_p;
  if (s.seed !== null && s.seed !== undefined) out.seed = s.seed;
  out.stop = [...stopStrings(s.stop)];
  out.stop_token_ids = [...(s.stop_token_ids ?? [])];
  if (s.ignore_eos === true) out.ignore_eos = true;
  if (maxTokens !== DEFAULT_MAX_TOKENS) out.max_tokens = maxTokens;
  const minTokens = s.min_tokens ?? 0;
  if (minTokens !== 0) out.min_tokens = minTokens;
  if (s.logprobs !== null && s.logprobs !== undefined) out.logprobs = s.logprobs;
  const promptLogprobs = s.prompt_logprobs ?? null;
  if (promptLogprobs !== null) out.prompt_logprobs = promptLogprobs;
  if (s.skip_special_tokens === false) out.skip_special_tokens = false;
  if (s.spaces_between_special_tokens === false) out.spaces_between_special_tokens = false;
  if (s.include_stop_str_in_output === true) out.include_stop_str_in_output = true;
  out.output_kind = o.stream ? OUTPUT_KIND_DELTA : OUTPUT_KIND_FINAL_ONLY;
  out.skip_clone = true;
  if (s.logit_bias) {
    // written as the floats SamplingParams holds
    out.logit_bias = Object.fromEntries(Object.entries(s.logit_bias).map(([k, v]) => [k, Number(v)]));
  }
  if (s.allowed_token_ids) out.allowed_token_ids = [...s.allowed_token_ids];
  if (o.extraArgs) out.extra_args = o.extraArgs;
  out.bad_words = [...(s.bad_words ?? [])];
  // prompt logprobs need every prompt position computed, so a request asking for them reads no cache
  out.skip_reading_prefix_cache = promptLogprobs !== null;
  return out;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const ints = (v: unknown): number[] | null =>
  Array.isArray(v) && v.every((x) => Number.isInteger(x)) ? (v as number[]) : null;
const strings = (v: unknown): string[] | null =>
  Array.isArray(v) && v.every((x) => typeof x === "string") ? (v as string[]) : null;
const bool = (v: unknown): boolean | null => (typeof v === "boolean" ? v : null);

/**
 * The SamplingParams fields of a chat or completion body that its schema does not keep (it reads
 * only what the engine model uses): the detokenizer switches, logit_bias, allowed_token_ids,
 * bad_words. Values of the wrong type are left out; the request path refuses them, not render.
 */
export function extraSampling(raw: unknown): Sampling {
  if (!isRecord(raw)) return {};
  const bias = isRecord(raw.logit_bias) ? raw.logit_bias : null;
  return {
    skip_special_tokens: bool(raw.skip_special_tokens),
    spaces_between_special_tokens: bool(raw.spaces_between_special_tokens),
    include_stop_str_in_output: bool(raw.include_stop_str_in_output),
    logit_bias:
      bias && Object.values(bias).every((x) => typeof x === "number")
        ? (bias as Record<string, number>)
        : null,
    allowed_token_ids: ints(raw.allowed_token_ids),
    bad_words: strings(raw.bad_words),
  };
}
