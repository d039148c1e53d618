// Reads the few engine gauges routing needs out of a Prometheus text page, touching only the lines
// that start with those names (a vLLM /metrics page has thousands of histogram lines we skip).

/** vllm:lora_requests_info's current series (the one with the largest value, a timestamp) */
export interface EngineLora {
  maxLora: number;
  running: string[];
  waiting: string[];
}

export interface EngineLoad {
  running: number;
  waiting: number;
  kvUsage: number;
  blockSize?: number | undefined;
  numGpuBlocks?: number | undefined;
  cacheConfig?: Record<string, string> | undefined;
  /** the engine's prefix-cache counters (tokens), summed over its series; for operators, not routing */
  prefixCacheHits?: number | undefined;
  prefixCacheQueries?: number | undefined;
  /** cumulative prefill seconds, prompt tokens and cached prompt tokens (predictive routing learns speed) */
  prefill?: { prefillSeconds: number; promptTokens: number; cachedTokens: number } | undefined;
  /** cumulative output tokens and finished requests (the autoscaler's mean lengths; ../autoscale) */
  generationTokens?: number | undefined;
  requestsFinished?: number | undefined;
  /** the engine's adapters, when it serves LoRA */
  lora?: EngineLora | undefined;
}

const RUNNING = "vllm:num_requests_running";
const WAITING = "vllm:num_requests_waiting";
const KV = "vllm:kv_cache_usage_perc";
const KV_OLD = "vllm:gpu_cache_usage_perc";
const CACHE_INFO = "vllm:cache_config_info";
const HITS = "vllm:prefix_cache_hits";
const QUERIES = "vllm:prefix_cache_queries";
const PREFILL_SUM = "vllm:request_prefill_time_seconds_sum";
const PROMPT_TOKENS = "vllm:prompt_tokens_total";
const LORA_INFO = "vllm:lora_requests_info";
const GENERATION_TOKENS = "vllm:generation_tokens_total";
const SUCCESS = "vllm:request_success_total";

function sampleValue(line: string): number {
  // `name{labels} value [timestamp]` — the value follows the last '}' or the name
  const close = line.lastIndexOf("}");
  const rest = line.slice(close >= 0 ? close + 1 : line.indexOf(" ")).trim();
  const sp = rest.indexOf(" ");
  const v = Number(sp >= 0 ? rest.slice(0, sp) : rest);
  return Number.isFinite(v) ? v : 0;
}

function parseLabels(line: string): Record<string, string> {
  const out: Record<string, string> = {};
  const open = line.indexOf("{");
  const close = line.lastIndexOf("}");
  if (open < 0 || close < open) return out;
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
  const body = line.slice(open + 1, close);
  let m: RegExpExecArray | null;
  let n = 0;
  while ((m = re.exec(body)) !== null && n++ < 64) out[m[1]!] = m[2]!;
  return out;
}

function startsWithName(line: string, name: string): boolean {
  if (!line.startsWith(name)) return false;
  const c = line.charCodeAt(name.length);
  return c === 123 /* { */ || c === 32; /* space */
}

const zeroPrefill = () => ({ prefillSeconds: 0, promptTokens: 0, cachedTokens: 0 });

/** Sums each gauge across its series (data-parallel ranks, models); KV usage takes the maximum. */
export function parseEngineMetrics(text: string): EngineLoad {
  const load: EngineLoad = { running: 0, waiting: 0, kvUsage: 0 };
  let sawKv = false;
  let loraAt = -Infinity;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos);
    if (end < 0) end = text.length;
    // cheap prefix test before slicing: only lines starting with "vllm:" are looked at
    if (text.charCodeAt(pos) === 118 && text.startsWith("vllm:", pos)) {
      const line = text.slice(pos, end);
      if (startsWithName(line, RUNNING)) load.running += sampleValue(line);
      else if (startsWithName(line, LORA_INFO)) {
        // vLLM keeps a series per label combination it ever reported: the latest has the largest value
        const at = sampleValue(line);
        if (loraAt <= at) {
          loraAt = at;
          const l = parseLabels(line);
          const list = (v: string | undefined) => (v ? v.split(",").filter((x) => x.length > 0) : []);
          load.lora = {
            maxLora: Number(l.max_lora) || 1,
            running: list(l.running_lora_adapters),
            waiting: list(l.waiting_lora_adapters),
          };
        }
      } else if (startsWithName(line, WAITING)) load.waiting += sampleValue(line);
      else if (startsWithName(line, KV)) {
        load.kvUsage = sawKv ? Math.max(load.kvUsage, sampleValue(line)) : sampleValue(line);
        sawKv = true;
      } else if (startsWithName(line, KV_OLD)) {
        if (!sawKv) load.kvUsage = Math.max(load.kvUsage, sampleValue(line));
      } else if (startsWithName(line, `${HITS}_total`) || startsWithName(line, HITS)) {
        const hits = sampleValue(line);
        load.prefixCacheHits = (load.prefixCacheHits ?? 0) + hits;
        (load.prefill ??= zeroPrefill()).cachedTokens += hits;
      } else if (startsWithName(line, `${QUERIES}_total`) || startsWithName(line, QUERIES)) {
        load.prefixCacheQueries = (load.prefixCacheQueries ?? 0) + sampleValue(line);
      } else if (startsWithName(line, PREFILL_SUM))
        (load.prefill ??= zeroPrefill()).prefillSeconds += sampleValue(line);
      else if (startsWithName(line, PROMPT_TOKENS))
        (load.prefill ??= zeroPrefill()).promptTokens += sampleValue(line);
      else if (startsWithName(line, GENERATION_TOKENS))
        load.generationTokens = (load.generationTokens ?? 0) + sampleValue(line);
      else if (startsWithName(line, SUCCESS))
        load.requestsFinished = (load.requestsFinished ?? 0) + sampleValue(line);
      else if (startsWithName(line, CACHE_INFO) && !load.cacheConfig) {
        const labels = parseLabels(line);
        load.cacheConfig = labels;
        const bs = Number(labels.block_size);
        const nb = Number(labels.num_gpu_blocks);
        if (Number.isFinite(bs) && bs > 0) load.blockSize = bs;
        if (Number.isFinite(nb) && nb > 0) load.numGpuBlocks = nb;
      }
    }
    pos = end + 1;
  }
  return load;
}
