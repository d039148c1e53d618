// `multi-round-qa`: the production-stack benchmark shape. Every user has the shared system prompt,
// then a history of their own, then asks --num-rounds questions; each round waits for the previous
// answer and carries it. Requests carry `x-user-id` so that a session router can keep a user on
// one engine, which is where prefix caching pays.
import { makeRng } from "../random/rng.js";
import { DEFAULT_SHAPE, randomText, type TextShape } from "./text.js";
import type { Session, Workload } from "./types.js";

export interface MultiRoundQaOptions {
  numUsers: number;
  numRounds: number;
  /** tokens of the system prompt every user shares */
  sharedSystemPrompt: number;
  /** tokens of each user's own history, after the shared prompt */
  userHistoryPrompt: number;
  /** tokens of each question */
  questionLen: number;
  /** max_tokens of each answer */
  answerLen: number;
  seed: number;
  /** first user number, so that two runs against one server need not share users */
  initUserId: number;
}

export const MULTI_ROUND_QA_DEFAULTS: Omit<MultiRoundQaOptions, "seed"> = {
  numUsers: 10,
  numRounds: 5,
  sharedSystemPrompt: 1000,
  userHistoryPrompt: 2000,
  questionLen: 20,
  answerLen: 100,
  initUserId: 0,
};

export function multiRoundQaWorkload(o: MultiRoundQaOptions, shape: TextShape = DEFAULT_SHAPE): Workload {
  function* sessions(): Generator<Session> {
    const shared = randomText(o.sharedSystemPrompt, makeRng(o.seed, "mrqa-shared"), shape);
    for (let u = 0; u < o.numUsers; u++) {
      const user = o.initUserId + u;
      const rng = makeRng(o.seed, `mrqa-user-${user}`);
      // The user's own part starts with their id so that users diverge right after the shared prompt.
      const history = `user ${user}: ${randomText(Math.max(0, o.userHistoryPrompt - 3), rng, shape)}`;
      yield {
        id: `user-${user}`,
        index: u,
        system: o.sharedSystemPrompt > 0 ? `${shared}\n\n${history}` : history,
        systemTokens: o.sharedSystemPrompt + o.userHistoryPrompt,
        turns: Array.from({ length: o.numRounds }, (_, r) => ({
          text: `question ${r}: ${randomText(Math.max(1, o.questionLen - 3), rng, shape)}`,
          tokens: o.questionLen,
          maxTokens: o.answerLen,
        })),
        carriesHistory: true,
      };
    }
  }
  return {
    name: "multi-round-qa",
    sessions: { [Symbol.iterator]: sessions },
    naturalRequests: o.numUsers * o.numRounds,
    defaultEndpoint: "chat",
    sessionHeader: true,
  };
}
