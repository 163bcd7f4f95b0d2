/**
 * Runs vitest as a child process (tests of the test tooling: peer skips, the
 * CI failure count). The child gets a clean environment: none of the parent
 * run's VITEST_... or TEST variables, colours off, ECH_TEST_NESTED_VITEST=1 (files
 * that start child runs skip themselves under it, so a child never recurses).
 * Bounded: killed (its whole process group, by PID) after `timeoutMs`.
 */
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root. */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Set in the child's environment. */
export const NESTED_ENV = 'ECH_TEST_NESTED_VITEST';
const VITEST = join(REPO_ROOT, 'node_modules', 'vitest', 'vitest.mjs');

/** Output of one child vitest run. */
export interface ChildVitestRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** stdout then stderr, ANSI escapes removed. */
  output: string;
  stdout: string;
  stderr: string;
}

/** Environment of a child run: the parent's minus vitest's own variables, plus `overrides` (undefined deletes). */
export function childEnv(overrides: Record<string, string | undefined>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('VITEST') || k === 'TEST' || k === 'NODE_ENV') continue;
    env[k] = v;
  }
  env[NESTED_ENV] = '1';
  env['NO_COLOR'] = '1';
  env['FORCE_COLOR'] = '0';
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** `vitest run ARGS` with this Node, in the repository root. */
export function runVitest(
  args: string[],
  opts: { env?: Record<string, string | undefined>; timeoutMs?: number } = {},
): Promise<ChildVitestRun> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [VITEST, 'run', ...args], {
      cwd: REPO_ROOT,
      env: childEnv(opts.env ?? {}),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true, // own process group: a timeout kills vitest and its workers
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new Error(`vitest ${args.join(' ')} timed out after ${timeoutMs} ms\n${stdout}\n${stderr}`));
        return;
      }
      const strip = (s: string): string => s.replace(/\x1b\[[0-9;]*m/g, '');
      resolve({ code, signal, stdout, stderr, output: strip(stdout) + strip(stderr) });
    });
  });
}
