// Ingress step: count the prompt (ingress.ts). A long prompt is counted off the event loop with the
// engine's tokenizer (prompt-budget.ts): vLLM's 400 when it cannot fit, its token ids for routing when
// it does. A client gone while its prompt was counted is not admitted or routed for nobody.
import { WorkCancelled } from "../../eventloop/turns.js";
import type { PromptBudget } from "./prompt-budget.js";
import type { Passage } from "./passage.js";

/** What counting needs: the prompt budget. */
export interface CountPromptNeeds {
  budget: Pick<PromptBudget, "check">;
}

export class CountPrompt {
  constructor(private readonly d: CountPromptNeeds) {}

  /** A promise only where it waits (a prompt counted off the loop): a short one goes on in the same turn. */
  run(p: Passage): Promise<void> | undefined {
    const obj = p.body?.parsed;
    const workBegan = (p.workBegan = performance.now());
    if (!obj) return undefined;
    // the connection, not the response: a pipelined request's response has no socket of its own
    const counting = this.d.budget.check(p.ep, p.model!, obj, workBegan, p.req.socket);
    return counting === undefined ? undefined : this.counted(p, counting);
  }

  private async counted(p: Passage, counting: Promise<number[]>): Promise<void> {
    p.promptTokens = await counting;
    // gone after the counting's last look (it stops at its next slice or worker chunk once the
    // client is gone): not admitted or routed for nobody, and counted as a 499 by the way out
    if (p.req.socket.destroyed) throw new WorkCancelled();
  }
}
