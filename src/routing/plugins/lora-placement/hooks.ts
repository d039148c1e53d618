// The `lora` policy's hooks: a pick notes the adapter's request rate and the request on its engine, and
// tells the cache oracle what the pick found cached there; an end updates the moving mean of how long a
// request holds its engine and lets the request go there.
import type { PickHooks, OutcomeHooks } from "../../policy/policy.js";
import type { RequestView } from "../../policy/views.js";
import type { LoraPlacementBook } from "./book.js";

export function loraPickHooks(book: LoraPlacementBook): Pick<PickHooks, "onPicked" | "onUnpicked"> {
  return {
    onPicked: (req, engine) => {
      const request = req as RequestView;
      if (request.lora) book.rates.note(request.lora.name, book.lastNow);
      book.own.sent(engine.id, book.lastNow, book.service);
      const picked = book.scored.get(request);
      const i = picked ? picked.engines.indexOf(engine) : -1;
      const cache = book.cache;
      if (!picked || i < 0 || !cache?.onPicked) return;
      const cached = picked.cached[i]!;
      const source = picked.source[i]!;
      cache.onPicked(request, engine, cached, source, cached > 0 ? `${source}-hit` : "lora-cost");
    },
    // a pick that did not stand: its request is not in flight there (its send decays as any other)
    onUnpicked: (_req, engine) => book.own.ended(engine.id),
  };
}

export function loraOutcomeHooks(book: LoraPlacementBook): Pick<OutcomeHooks, "onDone" | "onAbandoned"> {
  return {
    onDone: (_req, engine, elapsedMs) => {
      // a moving mean of how long a request holds its engine
      book.service = 0.95 * book.service + 0.05 * (elapsedMs / 1000);
      book.own.ended(engine.id);
    },
    onAbandoned: (_req, engine) => book.own.ended(engine.id),
  };
}
