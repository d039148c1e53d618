// The highest-score picker most policies pick with: the highest summed score wins, exact ties going
// round-robin's way (the one round-robin would pick, or the next after it).
import type { Picker } from "../../policy/policy.js";

/** Highest score wins; exact ties go round-robin's way (below). */
export const maxScorePicker: Picker = (req, engines, scores) => {
  const count = engines.length;
  if (count === 0) return undefined;
  let best = -Infinity;
  for (let i = 0; i < count; i++) if (scores[i]! > best) best = scores[i]!;
  // among the tied, the one round-robin would pick, or the next after it: equal engines share the work
  // as round-robin shares it, and a policy never breaks a tie against where round-robin would go
  const start = req.seq % count;
  for (let offset = 0; offset < count; offset++) {
    const i = (start + offset) % count;
    if (best - scores[i]! <= 1e-12) return engines[i];
  }
  return engines[0];
};
