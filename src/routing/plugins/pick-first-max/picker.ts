// `firstMaxPicker`: the first engine with the highest score, as vllm-router picks (Rust's max_by over
// the engines in list order): ties go to the first engine listed, not round-robin's way. Shared by the
// vllm-router baselines (plugins/vllm-router-cache-aware, plugins/vllm-router-program).
import type { Picker } from "../../policy/policy.js";

/** the first engine with the highest score: vllm-router breaks ties by list order */
export const firstMaxPicker: Picker = (_req, engines, scores) => {
  let best = -1;
  for (let i = 0; i < engines.length; i++) if (best < 0 || scores[i]! > scores[best]!) best = i;
  return best < 0 ? undefined : engines[best];
};
