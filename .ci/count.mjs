#!/usr/bin/env node
// Counts one vitest run for the CI summary line.
//
//   node .ci/count.mjs REPORT.json [LOG]
//
// prints one line "passed failed skipped files_failed source" (source: json,
// text or none) and, on stderr, one line per test file that failed outside its
// tests. From the JSON report (vitest --reporter=json):
//
//   passed  = numPassedTests
//   failed  = numFailedTests
//             + test files with status "failed" and no failed test in them
//               (the file failed to import, a beforeAll/afterAll hook at file
//               or describe level threw, a peer was missing in CI, ...: vitest
//               then marks its tests skipped or has none, so numFailedTests
//               alone counts 0 for it)
//             + 1 if the report says success: false and nothing above counted
//               (e.g. no test file found)
//   skipped = numPendingTests + numTodoTests
//   files_failed = test files with status "failed"
//
// numFailedTestSuites is not used: it counts describe blocks as well as files,
// so a describe with one failing test would count that failure twice.
//
// Without a JSON report it falls back to vitest's text summary in LOG (the
// last "Tests ..." and "Test Files ..." lines): failed = max(failed tests,
// failed files), a lower bound, as the text does not say which files failed
// outside their tests.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** Counts a parsed vitest JSON report. */
export function countReport(r) {
  const files = Array.isArray(r.testResults) ? r.testResults : [];
  const failedFiles = files.filter((f) => f.status === 'failed');
  const outside = failedFiles.filter((f) => !(f.assertionResults ?? []).some((a) => a.status === 'failed'));
  let failed = (r.numFailedTests ?? 0) + outside.length;
  const notes = outside.map((f) => `${f.name} failed outside its tests: ${(f.message ?? '').split('\n')[0] || 'no message'}`);
  if (r.success === false && failed === 0) {
    failed = 1;
    notes.push('the run failed outside any test file (report success: false)');
  }
  return {
    passed: r.numPassedTests ?? 0,
    failed,
    skipped: (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0),
    filesFailed: failedFiles.length,
    notes,
  };
}

/** Counts vitest's text summary (fallback). */
export function countText(text) {
  const plain = text.replace(/\x1b\[[0-9;]*m/g, '').split('\n').reverse();
  const tests = plain.find((l) => /^\s*Tests\s+\d/.test(l));
  const files = plain.find((l) => /^\s*Test Files\s+\d/.test(l));
  if (tests === undefined && files === undefined) return null;
  const n = (line, what) => +(line?.match(new RegExp(`(\\d+) ${what}`))?.[1] ?? 0);
  return {
    passed: n(tests, 'passed'),
    failed: Math.max(n(tests, 'failed'), n(files, 'failed')),
    skipped: n(tests, 'skipped') + n(tests, 'todo'),
    filesFailed: n(files, 'failed'),
    notes: [],
  };
}

function main([report, log]) {
  let c = null;
  let source = 'none';
  try {
    c = countReport(JSON.parse(readFileSync(report, 'utf8')));
    source = 'json';
  } catch {
    try {
      if (log !== undefined) c = countText(readFileSync(log, 'utf8'));
      if (c !== null) source = 'text';
    } catch {
      c = null;
    }
  }
  c ??= { passed: 0, failed: 0, skipped: 0, filesFailed: 0, notes: [] };
  for (const note of c.notes) process.stderr.write(`[ci] ${note}\n`);
  process.stdout.write(`${c.passed} ${c.failed} ${c.skipped} ${c.filesFailed} ${source}\n`);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) main(process.argv.slice(2));
