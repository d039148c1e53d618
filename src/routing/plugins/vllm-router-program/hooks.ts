// `vllm-router-program`'s lifecycle hooks: a pick binds the request's program to its engine and
// counts it in flight there; a pick taken back puts the program where it was; a request's end starts
// its program's acting TTL (learned from the gaps between a program's requests, capped).
import type { EngineView, RequestView } from "../../policy/views.js";
import type { ProgramBook } from "./programs.js";

/** the request was sent to `engine`: its program is bound there, one more of it in flight */
export function onProgramPicked(book: ProgramBook, req: RequestView, engine: EngineView): void {
  const entry = book.pending.get(req);
  const key = req.sessionKey;
  if (entry && key !== undefined) {
    let program = book.programs.use(key);
    if (!program) {
      program = {
        engine: engine.id,
        demand: entry.demand,
        inFlight: 0,
        actingUntil: 0,
        lastDoneAt: -1,
        lastSeen: entry.firstSeen,
      };
      book.programs.set(key, program);
    } else if (
      !entry.sampled &&
      program.inFlight === 0 &&
      program.lastDoneAt >= 0 &&
      entry.firstSeen >= program.lastDoneAt
    ) {
      entry.sampled = true;
      book.sample(entry.firstSeen - program.lastDoneAt);
    }
    entry.before = { engine: program.engine, demand: program.demand };
    if (program.engine !== engine.id) book.active.get(program.engine)?.delete(program);
    program.engine = engine.id;
    program.demand = entry.demand;
    program.inFlight++;
    program.lastSeen = Math.max(program.lastSeen, entry.firstSeen);
    book.activeOn(engine.id).add(program);
  }
  const i = entry ? entry.engines.indexOf(engine) : -1;
  if (entry && i >= 0)
    book.oracle.onPicked?.(req, engine, entry.cached[i]!, entry.source[i] ?? "none", entry.reason);
}

/** a router group's claim refused the pick: the program is where it was before it */
export function onProgramUnpicked(book: ProgramBook, req: RequestView): void {
  const key = req.sessionKey;
  const program = key !== undefined ? book.programs.get(key) : undefined;
  const entry = book.pending.get(req);
  if (!program || program.inFlight <= 0) return;
  program.inFlight--;
  const was = entry?.before;
  if (!was) return;
  entry.before = undefined;
  if (was.engine !== program.engine) {
    book.active.get(program.engine)?.delete(program);
    program.engine = was.engine;
    book.activeOn(was.engine).add(program); // (dropped there again at the next look if no longer active)
  }
  program.demand = was.demand;
}

/** the request of a program ended `elapsedMs` after it was first decided: its acting TTL starts */
export function onProgramEnded(
  book: ProgramBook,
  req: RequestView,
  elapsedMs: number,
  completed: boolean,
): void {
  const key = req.sessionKey;
  const entry = book.pending.get(req);
  const program = key !== undefined ? book.programs.get(key) : undefined;
  if (entry) entry.waitFrom = -1; // a retry of it (failover) waits anew
  if (!program || !entry || program.inFlight <= 0) return;
  program.inFlight--;
  if (program.inFlight > 0) return;
  const at = entry.firstSeen + elapsedMs;
  program.lastDoneAt = at;
  program.lastSeen = Math.max(program.lastSeen, at);
  const retain = entry.agentic?.kvRetentionTtlS;
  // a request cancelled or failed drops its program's hold at once; a client's own TTL is held to
  // the same cap as the automatic one, so no request can hold an engine's room for long
  const hold =
    retain !== undefined && retain >= 0 ? Math.min(retain * 1000, book.settings.maxActingTtlMs) : book.ttlMs;
  program.actingUntil = completed ? at + hold : at;
}
