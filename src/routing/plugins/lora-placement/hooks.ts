// The `lora` policy's hooks: a pick notes the adapter's request rate and tells the cache oracle what the
// pick found cached there; an end updates the moving mean of how long a request holds its engine.
import type { PickHooks, OutcomeHooks } from "../../policy/policy.js";
import type { RequestView } from "../../policy/views.js";
import type { LoraPlacementBook } from "./book.js";

export function loraPickHooks(book: LoraPlacementBook): Pick<PickHooks, "onPicked"> {
  return {
    onPicked: (req, engine) => {
      const request = req as RequestView;
      if (request.lora) book.rates.note(request.lora.name, book.lastNow);
      const picked = book.scored.get(request);
      const i = picked ? picked.engines.indexOf(engine) : -1;
      const cache = book.cache;
      if (!picked || i < 0 || !cache?.onPicked) return;
      const cached = picked.cached[i]!;
      const source = picked.source[i]!;
      cache.onPicked(request, engine, cached, source, cached > 0 ? `${source}-hit` : "lora-cost");
    },
  };
}

export function loraOutcomeHooks(book: LoraPlacementBook): Pick<OutcomeHooks, "onDone"> {
  return {
    onDone: (_req, _e, elapsedMs) => {
      // a moving mean of how long a request holds its engine
      book.service = 0.95 * book.service + 0.05 * (elapsedMs / 1000);
    },
  };
}
