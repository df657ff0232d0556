import { defineConfig } from "vitest/config"

// The in-process unit and property tests only: what `npm run mutate:unit` runs against each
// mutant to find the survivors quickly. The score that counts is `npm run mutate`'s, on the
// whole suite.
export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    exclude: ["test/e2e/**", "test/**/*.e2e.test.ts", "test/cli/**", "test/workers/Cluster.test.ts", "**/node_modules/**"],
    testTimeout: 30_000,
    hookTimeout: 30_000
  }
})
