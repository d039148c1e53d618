// The `prefix` policy's oracle: predictions from the approximate character-block index, which learns
// from the policy's own picks. Deterministic, so the fleet simulator can run it in virtual time.
import { RequestMemo } from "../policy/memo.js";
import { PrefixIndex, type PrefixIndexOptions } from "./prefix-index.js";
import type { CacheOracle, CachePrediction, CacheSource } from "../policy/cache-oracle.js";
import type { EngineView, RequestView } from "../policy/views.js";

/** English text averages about 4 characters per token in BPE vocabularies of this size. */
export const CHARS_PER_TOKEN = 4;

interface Prepared {
  ids: number[];
  chars: number;
}

export class PrefixOracle implements CacheOracle {
  readonly index: PrefixIndex;
  private readonly prepared = new RequestMemo<Prepared>("prefix-oracle.prepared");

  constructor(opts: PrefixIndexOptions = {}) {
    this.index = new PrefixIndex(opts);
  }

  /** estimated tokens one index block stands for */
  get tokensPerBlock(): number {
    return this.index.opts.blockChars / CHARS_PER_TOKEN;
  }

  /** the request's block ids, computed once per request however often it is scored */
  prepare(req: RequestView): Prepared {
    let prepared = this.prepared.get(req);
    if (!prepared) {
      prepared = this.index.ids(req);
      this.prepared.set(req, prepared);
    }
    return prepared;
  }

  /** Gives the request its block ids made elsewhere (a worker thread, by promptBlockIds with these options). */
  provide(req: RequestView, prepared: Prepared): void {
    this.prepared.set(req, prepared);
  }

  /**
   * Matched characters per candidate, converted to estimated tokens; candidates marked in `skip` are
   * not looked up (0), their caller predicting them otherwise. Returns the prompt's estimated tokens.
   */
  predictInto(
    req: RequestView,
    engines: readonly EngineView[],
    blocks: Float64Array,
    skip?: Uint8Array,
  ): number {
    const prepared = this.prepare(req);
    this.index.match(prepared.ids, engines, blocks, skip);
    const perBlock = this.index.opts.blockChars / CHARS_PER_TOKEN;
    for (let i = 0; i < blocks.length; i++) blocks[i] = blocks[i]! * perBlock;
    return Math.ceil(prepared.chars / CHARS_PER_TOKEN);
  }

  predict(req: RequestView, engines: readonly EngineView[]): CachePrediction {
    const cachedTokens = new Float64Array(engines.length);
    const promptTokens = this.predictInto(req, engines, cachedTokens);
    return {
      promptTokens,
      cachedTokens,
      source: engines.map(() => "prefix" as CacheSource),
      blocks: { ids: this.prepare(req).ids, tokensPerBlock: this.tokensPerBlock },
    };
  }

  onPicked(req: RequestView, engine: EngineView): void {
    this.learn(req, engine.id);
  }

  learn(req: RequestView, engineId: string): void {
    const prepared = this.prepare(req);
    if (prepared.ids.length > 0) this.index.insert(prepared.ids, engineId);
  }
}
