// `lora` (ours): LoRA placement priced in seconds. Each candidate costs the load the request finds
// there, the cold load (nothing when the adapter is in flight or loaded there; the read and copy at the
// engine's rates otherwise), the wait for a slot when every slot serves another adapter, and the price
// of the adapter a load would evict from the host cache (its recent traffic × its own cold load), less
// the prefill its cached prefix of the prompt saves where the caller gives a cache oracle. The cheapest
// wins, so hot adapters stay where they run and replicate when their engine is loaded, cold ones go
// where slots are free. (Holding a request at the router while its cheapest engine has no free slot, to
// take the first slot that frees anywhere, measured worse in virtual time: the scraped adapter sets
// lag, and the engine's own queue admits it in the step its adapter's slot frees.)
import { standardFilters } from "../standard-filters/filters.js";
import type { CacheOracle } from "../../policy/cache-oracle.js";
import type { Policy } from "../../policy/policy.js";
import { LoraPlacementBook, type LoraPolicyOptions } from "./book.js";
import { loraOutcomeHooks, loraPickHooks } from "./hooks.js";
import { seqRotatedMaxPicker } from "./picker.js";
import { loraCostScorer } from "./scorer.js";

/** ours: the cheapest engine by queue, cold load, slot wait and the eviction's price, in seconds */
export function createLoraPolicy(opts: LoraPolicyOptions = {}): Policy {
  const book = new LoraPlacementBook(opts);
  return {
    name: "lora",
    filters: standardFilters,
    scorers: [loraCostScorer(book)],
    picker: seqRotatedMaxPicker,
    loadElsewhereKeepsPick: true,
    ...loraPickHooks(book),
    ...loraOutcomeHooks(book),
  };
}

/** `lora` from the config's options: priced with the cache oracle where one is given */
export function loraPlacementPolicy(_name: string, opts: { cache?: CacheOracle }): Policy {
  return createLoraPolicy({ cache: opts.cache });
}
