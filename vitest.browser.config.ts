// vitest config for the browser suite (test/browser): real Chromium inside a
// network namespace. Needs root, chromium, iproute2, libnss3-tools.
// Run with `npm run test:browser` (= vitest run --config vitest.browser.config.ts).
// Outside CI a file whose peer is missing (not root, no chromium, ...) is
// skipped with one summary; with CI set it fails (test/helpers/peers.ts).
import { defineConfig } from 'vitest/config';
import { peerTestOptions } from './test/helpers/peers.js';

export default defineConfig({
  test: {
    include: ['test/browser/**/*.test.ts'],
    // One file at a time: each Chromium run wants most of a core.
    fileParallelism: false,
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    teardownTimeout: 30_000,
    ...peerTestOptions(),
  },
});
