// The `lora` policy's picker: the highest score, exact ties rotating by the request's seq (the first
// engine from seq mod n on with the strictly highest score).
import type { Picker } from "../../policy/policy.js";
import type { EngineView } from "../../policy/views.js";

export const seqRotatedMaxPicker: Picker = (req, engines, scores) => {
  let best: EngineView | undefined;
  let bestScore = -Infinity;
  // exact ties rotate by the request's seq
  const count = engines.length;
  for (let k = 0; k < count; k++) {
    const i = (k + req.seq) % count;
    if (scores[i]! > bestScore) {
      bestScore = scores[i]!;
      best = engines[i];
    }
  }
  return best;
};
