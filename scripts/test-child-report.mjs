// Loaded into every test file's process (scripts/run-tests.mjs passes it to `node --test`, which hands
// its flags to each file's process). With --test-force-exit a file's process exits as soon as its
// tests are done, and whatever of its report to the runner still waited in the pipe's buffer was
// lost: the file's last verdicts went missing from the count, a failure's name and error with them
// (https://github.com/nodejs/node/issues/64833). Written synchronously, the report is whole before
// the exit. Only in a test file's process: the runner itself, and the servers the tests start (which
// may inherit both the flag and the runner's variable), are left as they are.
if (process.env.NODE_TEST_CONTEXT === "child-v8" && /\.test\.[cm]?js$/.test(process.argv[1] ?? ""))
  for (const stream of [process.stdout, process.stderr]) stream._handle?.setBlocking?.(true);
