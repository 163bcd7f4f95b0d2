// .ci/count.mjs, the counter behind .ci/run's `tests: N passed, N failed`
// line: a test file that fails outside its tests (import error, beforeAll or
// afterAll throwing, a missing peer in CI) is a failure, although vitest's
// numFailedTests does not count it (issue 15: 19 failed files printed as
// "390 passed, 0 failed").
//
// The report comes from a real vitest run over test/fixtures/ci-count (files
// that fail in each of those ways) in a child process.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { NESTED_ENV, REPO_ROOT, runVitest } from './helpers/child-vitest.js';

const COUNT = join(REPO_ROOT, '.ci', 'count.mjs');
const tmp = mkdtempSync(join(tmpdir(), 'ech-ci-count-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

async function count(...args: string[]): Promise<{ line: string; notes: string }> {
  const { stdout, stderr } = await promisify(execFile)(process.execPath, [COUNT, ...args], { timeout: 10_000 });
  return { line: stdout.trim(), notes: stderr };
}

function writeJson(name: string, value: unknown): string {
  const path = join(tmp, name);
  writeFileSync(path, JSON.stringify(value));
  return path;
}

describe.skipIf(process.env[NESTED_ENV] !== undefined)('.ci/count.mjs on a real vitest report', () => {
  it('counts a failed test once and each file that failed outside its tests (import, beforeAll, afterAll) as one failure', async () => {
    const report = join(tmp, 'fixtures.json');
    const run = await runVitest([
      '--config', 'test/fixtures/ci-count/vitest.config.ts',
      '--reporter=json', `--outputFile.json=${report}`,
    ]);
    expect(run.code, run.output).toBe(1);
    // vitest's own test count sees one failure only.
    expect((JSON.parse(readFileSync(report, 'utf8')) as { numFailedTests: number }).numFailedTests).toBe(1);

    // passing: 2 passed; failing: 1 failed + 1 passed; after-all: 1 passed +
    // file failed; before-all: 2 skipped + file failed; import-error: file failed.
    const { line, notes } = await count(report);
    expect(line).toBe('4 4 2 4 json');
    expect(notes).toMatch(/import-error\.fixture\.ts failed outside its tests: fixture: this file fails at import/);
    expect(notes).toMatch(/before-all\.fixture\.ts failed outside its tests: fixture: beforeAll fails/);
    expect(notes).toMatch(/after-all\.fixture\.ts failed outside its tests: fixture: afterAll fails/);
    expect(notes).not.toMatch(/failing\.fixture\.ts/);
  });
});

describe('.ci/count.mjs on hand-made reports', () => {
  it('390 passed tests and a file that failed without a failed test: 1 failed', async () => {
    const report = writeJson('one-file.json', {
      numPassedTests: 390,
      numFailedTests: 0,
      numPendingTests: 0,
      numTodoTests: 0,
      numFailedTestSuites: 1,
      success: false,
      testResults: [
        { name: '/r/test/ok.test.ts', status: 'passed', message: '', assertionResults: [{ status: 'passed' }] },
        { name: '/r/test/peer.test.ts', status: 'failed', message: 'BoringSSL peer unavailable\nmore', assertionResults: [{ status: 'skipped' }] },
      ],
    });
    const { line, notes } = await count(report);
    expect(line).toBe('390 1 0 1 json');
    expect(notes).toBe('[ci] /r/test/peer.test.ts failed outside its tests: BoringSSL peer unavailable\n');
  });

  it('a run that failed with no file to blame (success: false, nothing failed) counts one failure', async () => {
    const report = writeJson('no-files.json', { numPassedTests: 0, numFailedTests: 0, success: false, testResults: [] });
    expect((await count(report)).line).toBe('0 1 0 0 json');
  });

  it('a clean run counts no failure', async () => {
    const report = writeJson('clean.json', {
      numPassedTests: 3,
      numFailedTests: 0,
      numPendingTests: 1,
      numTodoTests: 1,
      success: true,
      testResults: [{ name: '/r/a.test.ts', status: 'passed', message: '', assertionResults: [{ status: 'passed' }] }],
    });
    expect((await count(report)).line).toBe('3 0 2 0 json');
  });

  it('without a JSON report: the text summary in the log, failed files as a lower bound; nothing at all: source none', async () => {
    const log = join(tmp, 'log.txt');
    writeFileSync(log, '\x1b[2m Test Files \x1b[22m 19 failed | 26 passed (45)\n      Tests  390 passed | 3 skipped (393)\n');
    expect((await count(join(tmp, 'absent.json'), log)).line).toBe('390 19 3 19 text');
    expect((await count(join(tmp, 'absent.json'), join(tmp, 'absent.log'))).line).toBe('0 0 0 0 none');
  });
});
