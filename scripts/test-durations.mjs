// A node:test reporter for scripts/run-tests.mjs: how long each test file's tests took (the sum of
// its top-level tests and suites, which run one after another), as one JSON object written at the
// end. run-tests.mjs keeps it between runs and starts the longest files first, so a slow file does
// not start last and run alone while the other lanes sit idle.
export default async function* durations(source) {
  const perFile = {};
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { nesting, file, details } = event.data;
    if (nesting !== 0 || !file) continue;
    perFile[file] = Math.round((perFile[file] ?? 0) + (details?.duration_ms ?? 0));
  }
  yield JSON.stringify(perFile);
}
