import { configDefaults, defineConfig } from 'vitest/config';
import { peerTestOptions } from './test/helpers/peers.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The browser suite needs root (network namespaces) and Debian's
    // chromium: `npm run test:browser`, run by .ci/run after `npm test`.
    exclude: [...configDefaults.exclude, 'test/browser/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Files tagged `// @module-tag peer-<id>` need that real peer: skipped
    // with one summary when it is missing, a failure when CI is set
    // (test/helpers/peers.ts, test/peers/debian-packages.txt).
    ...peerTestOptions(),
  },
});
