import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';
import { peerTestOptions } from './test/helpers/peers.js';

const src = fileURLToPath(new URL('./src/', import.meta.url));

export default defineConfig({
  resolve: {
    // The examples import the package by name, as an app would; in the repo
    // those names are the sources (tsconfig.json "paths" says the same to tsc).
    // test/package.test.ts checks the same imports against the packed tarball.
    alias: [
      { find: /^ech-server$/, replacement: `${src}index.ts` },
      { find: /^ech-server\/(.+)$/, replacement: `${src}$1.ts` },
    ],
  },
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
