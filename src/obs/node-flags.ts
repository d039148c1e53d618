// Node's own flags as this process started with them: whether the operator gave one (on node's command
// line, or in NODE_OPTIONS, which node reads the same way), and the mark of a router that re-executed
// itself with a flag of ours, so that its workers can tell that flag from the operator's.

/** set by a router re-executed with its young generation (src/cli/v8-heap.ts): the flag is its own */
export const HEAP_SET_ENV = "SWITCHYARD_HEAP_SET";

/** whether `--name` (alone or `=value`; node takes `_` for `-`) is among execArgv or in NODE_OPTIONS */
export function nodeFlagGiven(
  name: string,
  execArgv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): boolean {
  const is = (arg: string) => arg.split("=")[0]!.replaceAll("_", "-") === name;
  return execArgv.some(is) || (env.NODE_OPTIONS ?? "").split(/\s+/).some(is);
}
