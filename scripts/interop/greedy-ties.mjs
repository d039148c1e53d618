// Judging greedy output across engines and batchings: equal, or parted only at a tie.
//
// vLLM's CPU build runs the tiny model in bfloat16, and its logits move by a step of bfloat16 when the
// batch around a sequence changes. Where the two best next tokens are that close, greedy picks either,
// and everything after follows the pick. Measured on vLLM 0.32 (CPU): of 1,280 greedy tokens, 5% had
// their two best logprobs within 2^-8 nats, and a stream run with its 7 neighbours against 3 (or alone)
// parted at token 66, where the reference's two best were level (0.0000) and the other run's were one
// step apart (0.0039). So a stream through the router (other batches), or from a KV cache another
// engine computed, is judged against a reference run that reports its top two logprobs a token: it
// must equal the reference, or part from it only where the reference's runner-up is what it took and
// the two best were within TIE_NATS. A bug (a token lost or repeated in a migration, a wrong cached
// block) parts elsewhere, or takes a token that was not the runner-up.

/** two candidates this close in logprob (nats) are a tie: two bfloat16 steps at the tiny model's logits */
export const TIE_NATS = 1 / 128;

/**
 * The request fields that make vLLM report each generated token's top two candidates by id (a
 * reference run's body gets these; the run judged needs only `return_token_ids`).
 */
export function topTwo(chat) {
  return chat
    ? { logprobs: true, top_logprobs: 2, return_tokens_as_token_ids: true }
    : { logprobs: 2, return_tokens_as_token_ids: true };
}

const idOf = (t) => Number(String(t).slice("token_id:".length));

/**
 * The top-two candidates of each generated token in a completion's or chat's choice (a streamed chunk's
 * or a whole answer's), appended to `out` as [id, logprob, id, logprob].
 */
export function collectTopTwo(choice, out) {
  const lp = choice?.logprobs;
  if (!lp) return;
  // completions: a {token: logprob} object a token
  for (const t of lp.top_logprobs ?? []) {
    const c = Object.entries(t ?? {})
      .map(([k, v]) => [idOf(k), v])
      .sort((a, b) => b[1] - a[1]);
    out.push([c[0]?.[0], c[0]?.[1], c[1]?.[0], c[1]?.[1]]);
  }
  // chat: a {token, logprob, top_logprobs: [{token, logprob}]} a token
  for (const t of lp.content ?? []) {
    const c = (t.top_logprobs ?? []).map((x) => [idOf(x.token), x.logprob]).sort((a, b) => b[1] - a[1]);
    out.push([c[0]?.[0], c[0]?.[1], c[1]?.[0], c[1]?.[1]]);
  }
}

/**
 * How `ids` compares with the reference `ref` ({ids, top2}): `{same: true}`; or `{same: false, at,
 * tie: true}` where it parts at token `at`, taking the reference's runner-up there with the two best
 * within TIE_NATS; or `{same: false, at, tie: false, why}`.
 */
export function judge(ids, ref) {
  const n = Math.min(ids.length, ref.ids.length);
  let at = 0;
  while (at < n && ids[at] === ref.ids[at]) at++;
  if (at === n && ids.length === ref.ids.length) return { same: true };
  if (at === n) return { same: false, at, tie: false, why: `${ids.length} tokens against ${ref.ids.length}` };
  const c = ref.top2?.[at];
  if (!c || c[0] !== ref.ids[at])
    return { same: false, at, tie: false, why: "the reference reported no top two there" };
  const gap = c[1] - c[3];
  if (c[2] === ids[at] && gap <= TIE_NATS) return { same: false, at, tie: true, gap };
  return {
    same: false,
    at,
    tie: false,
    why: `token ${at}: ${ids[at]} where the reference took ${c[0]} (${c[1].toFixed(4)}), runner-up ${c[2]} (${c[3]?.toFixed(4)})`,
  };
}
