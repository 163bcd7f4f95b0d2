// vitest config for the browser suite (test/browser): real Chromium inside a
// network namespace. Needs root, chromium, iproute2, libnss3-tools.
// Run with `npx vitest run --config vitest.browser.config.ts`.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    // One file at a time: each Chromium run wants most of a core.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
  },
});
