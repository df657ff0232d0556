import { defineConfig } from "vitest/config"

// What `npm run mutate` runs against each mutant: the whole suite but the tests that run the
// gateway in a child process (the CLI, the cluster, the access log through `fibergate run`, the installed package).
// Stryker records coverage only in its own test process, so those tests are never picked for a
// mutant and only cost time; the demo test's fixed ports would also collide between Stryker's
// two test runners.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: [
      "**/node_modules/**",
      "test/cli/Cli.test.ts",
      "test/cli/ConfigPath.test.ts",
      "test/cli/Demo.e2e.test.ts",
      "test/cli/RunClaims.test.ts",
      "test/cli/Shutdown.e2e.test.ts",
      "test/cli/Promotion.e2e.test.ts",
      "test/workers/Cluster.test.ts",
      "test/e2e/ReloadCli.test.ts",
      "test/telemetry/AccessLog.e2e.test.ts",
      "test/package/**"
    ],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
