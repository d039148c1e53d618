// A planner worker thread: runs the simulations it is sent, one at a time, and posts each result back.
// Its workload cache (jobs.ts) lives as long as the thread, i.e. for one plan.
import { parentPort } from "node:worker_threads";
import { runJob, type RunJob } from "./jobs.js";

parentPort?.on("message", (msg: { id: number; job: RunJob }) => {
  try {
    parentPort!.postMessage({ id: msg.id, result: runJob(msg.job) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) });
  }
});
