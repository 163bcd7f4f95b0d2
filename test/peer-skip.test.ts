// `npm test` on a machine without the peers (issue 15): a test file whose
// peer is missing is skipped outside CI, and the run ends with one summary
// naming the skipped files, the missing peers and the command that installs
// them; with CI=true the same file FAILS, naming the peer.
//
// The peers are installed here, so ECH_TEST_HIDE_PEERS makes detection report
// some of them missing, and a child vitest (test/helpers/child-vitest.ts) runs
// a few real peer test files under it. The child runs named files only, and
// this file skips itself inside a child run: no recursion.
import { execFileSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { NESTED_ENV, REPO_ROOT, runVitest } from './helpers/child-vitest.js';
import { HIDE_ENV, NOT_ROOT, PEER_IDS, detectPeers, hiddenPeers, readPeerPackages } from './peers/detect.js';
import { ciFailureMessage, skipSummary } from './helpers/peers.js';

interface JsonReport {
  testResults: { name: string; status: string; message: string; assertionResults: { status: string }[] }[];
}

const tmp = mkdtempSync(join(tmpdir(), 'ech-peer-skip-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

function fileResult(report: JsonReport, file: string): JsonReport['testResults'][number] {
  const r = report.testResults.find((t) => t.name === join(REPO_ROOT, file));
  if (r === undefined) throw new Error(`${file} not in the report: ${report.testResults.map((t) => t.name).join(', ')}`);
  return r;
}

function count(haystack: string, needle: string): number {
  return haystack.split(needle).length - 1;
}

describe.skipIf(process.env[NESTED_ENV] !== undefined)('peer test files on a machine without the peers', () => {
  it('outside CI: files needing a missing peer are skipped, the others run, one summary names files, peers and the apt-get command', async () => {
    const out = join(tmp, 'skip.json');
    const run = await runVitest(
      [
        'test/boringssl-harness.test.ts', // boringssl + openssl
        'test/dns-rotate-cli.test.ts', // knot
        'test/tls13-openssl.test.ts', // openssl
        'test/wire.test.ts', // no peer: runs
        '--reporter=default',
        '--reporter=json',
        `--outputFile.json=${out}`,
      ],
      { env: { CI: undefined, [HIDE_ENV]: 'boringssl,knot,openssl' } },
    );
    expect(run.code, run.output).toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as JsonReport;
    for (const file of ['test/boringssl-harness.test.ts', 'test/dns-rotate-cli.test.ts', 'test/tls13-openssl.test.ts']) {
      const statuses = fileResult(report, file).assertionResults.map((a) => a.status);
      expect(statuses.length, file).toBeGreaterThan(0);
      expect(new Set(statuses), file).toEqual(new Set(['skipped']));
    }
    const wire = fileResult(report, 'test/wire.test.ts').assertionResults.map((a) => a.status);
    expect(wire.length).toBeGreaterThan(0);
    expect(new Set(wire)).toEqual(new Set(['passed']));

    // One summary, after vitest's own.
    expect(count(run.output, 'PEERS MISSING')).toBe(1);
    const summary = run.output.slice(run.output.indexOf('PEERS MISSING'));
    expect(run.output.indexOf('PEERS MISSING')).toBeGreaterThan(run.output.lastIndexOf('Test Files'));
    expect(summary).toContain('3 test files were SKIPPED');
    expect(summary).toMatch(/^ {2}boringssl\s+BoringSSL .*hidden by ECH_TEST_HIDE_PEERS$/m);
    expect(summary).toMatch(/^ {2}openssl\s+the OpenSSL command line tool.*hidden by ECH_TEST_HIDE_PEERS$/m);
    expect(summary).toMatch(/^ {2}knot\s+Knot DNS .*hidden by ECH_TEST_HIDE_PEERS$/m);
    expect(summary).toMatch(/^ {2}test\/boringssl-harness\.test\.ts\s+boringssl, openssl$/m);
    expect(summary).toMatch(/^ {2}test\/dns-rotate-cli\.test\.ts\s+knot$/m);
    expect(summary).toMatch(/^ {2}test\/tls13-openssl\.test\.ts\s+openssl$/m);
    expect(summary).not.toContain('wire.test');
    expect(summary).toMatch(
      /^ {2}(sudo )?apt-get install -y android-libboringssl android-libboringssl-dev gcc libc6-dev openssl ca-certificates knot knot-dnsutils$/m,
    );
  });

  it('a file whose peer is detected runs; the same file with the peer absent is skipped, named in the summary', async () => {
    const fake = join(tmp, 'fake-chromium');
    writeFileSync(fake, '#!/bin/sh\nexit 1\n');
    chmodSync(fake, 0o755);
    const args = ['--config', 'test/fixtures/peer-skip/vitest.config.ts', '--reporter=default', '--reporter=json'];

    const presentOut = join(tmp, 'present.json');
    const present = await runVitest([...args, `--outputFile.json=${presentOut}`], { env: { CI: undefined, CHROMIUM_BIN: fake } });
    expect(present.code, present.output).toBe(0);
    const presentReport = JSON.parse(readFileSync(presentOut, 'utf8')) as JsonReport;
    expect(presentReport.testResults.flatMap((f) => f.assertionResults.map((a) => a.status))).toEqual(['passed']);
    expect(present.output).not.toContain('PEERS MISSING');

    const absentOut = join(tmp, 'absent.json');
    const gone = join(tmp, 'no-chromium-here');
    const absent = await runVitest([...args, `--outputFile.json=${absentOut}`], { env: { CI: undefined, CHROMIUM_BIN: gone } });
    expect(absent.code, absent.output).toBe(0);
    const absentReport = JSON.parse(readFileSync(absentOut, 'utf8')) as JsonReport;
    expect(absentReport.testResults.flatMap((f) => f.assertionResults.map((a) => a.status))).toEqual(['skipped']);
    expect(count(absent.output, 'PEERS MISSING')).toBe(1);
    expect(absent.output).toContain('1 test file was SKIPPED');
    expect(absent.output).toContain(`  chromium  Chromium: ${gone} not found`);
    expect(absent.output).toMatch(/^ {2}chromium\.fixture\.ts\s+chromium$/m);
    expect(absent.output).toMatch(/^ {2}(sudo )?apt-get install -y chromium$/m);
  });

  it('with CI=true a missing peer fails its file with a message naming the peer; nothing is skipped', async () => {
    const out = join(tmp, 'ci.json');
    const run = await runVitest(
      ['test/dns-rotate-cli.test.ts', 'test/wire.test.ts', '--reporter=default', '--reporter=json', `--outputFile.json=${out}`],
      { env: { CI: 'true', [HIDE_ENV]: 'knot' } },
    );
    expect(run.code, run.output).not.toBe(0);
    const report = JSON.parse(readFileSync(out, 'utf8')) as JsonReport;
    const failed = fileResult(report, 'test/dns-rotate-cli.test.ts');
    expect(failed.status).toBe('failed');
    expect(failed.message).toContain('test/dns-rotate-cli.test.ts needs test peers that are missing');
    expect(failed.message).toMatch(/^ {2}knot: Knot DNS .*hidden by ECH_TEST_HIDE_PEERS$/m);
    expect(failed.message).toMatch(/Install them with: (sudo )?apt-get install -y knot knot-dnsutils$/m);
    expect(fileResult(report, 'test/wire.test.ts').status).toBe('passed');
    expect(run.output).not.toContain('PEERS MISSING');
  });
});

describe('peer detection', () => {
  it('debian-packages.txt lists every peer once, and .ci/peer-packages installs exactly its packages', () => {
    const packages = readPeerPackages();
    expect([...packages.keys()].sort()).toEqual([...PEER_IDS].sort());
    const ci = execFileSync(join(REPO_ROOT, '.ci', 'peer-packages'), { encoding: 'utf8' }).split('\n').filter(Boolean);
    expect(ci).toEqual([...packages.values()].flat());
    expect(ci).toContain('android-libboringssl-dev');
  });

  it('reads a missing or non-executable Chromium binary as a missing peer, naming the path', () => {
    const notThere = join(tmp, 'no-such-chromium');
    expect(detectPeers({ ...process.env, CHROMIUM_BIN: notThere }).find((p) => p.id === 'chromium')?.missing).toBe(`${notThere} not found`);
    const notExecutable = join(tmp, 'chromium-not-executable');
    writeFileSync(notExecutable, '');
    chmodSync(notExecutable, 0o644);
    expect(detectPeers({ ...process.env, CHROMIUM_BIN: notExecutable }).find((p) => p.id === 'chromium')?.missing).toBe(`${notExecutable} not found`);
  });

  it('ECH_TEST_HIDE_PEERS: a list, all, and an unknown name is an error (a typo must not hide nothing)', () => {
    expect([...hiddenPeers({ [HIDE_ENV]: 'knot, bind' })]).toEqual(['knot', 'bind']);
    expect(hiddenPeers({ [HIDE_ENV]: 'all' }).size).toBe(PEER_IDS.length);
    expect(hiddenPeers({}).size).toBe(0);
    expect(() => hiddenPeers({ [HIDE_ENV]: 'boringsll' })).toThrow(/unknown peer "boringsll"/);
    const hidden = detectPeers({ ...process.env, [HIDE_ENV]: 'all' });
    expect(hidden.every((p) => p.missing === 'hidden by ECH_TEST_HIDE_PEERS')).toBe(true);
  });

  it('a peer missing only for want of root gets no apt-get line, only the hint to run as root', () => {
    const netns = { id: 'netns' as const, description: 'network namespaces', reason: NOT_ROOT, packages: ['iproute2'], rootOnly: true };
    const chromium = { id: 'chromium' as const, description: 'Chromium', reason: '/usr/bin/chromium not found', packages: ['chromium'], rootOnly: false };
    const rootOnly = skipSummary([{ file: 'test/browser/netns.test.ts', peers: ['netns'] }], { ci: false, missing: [netns, chromium] });
    expect(rootOnly).not.toContain('apt-get');
    expect(rootOnly).not.toContain('chromium'); // not needed by any skipped file
    expect(rootOnly).toMatch(/^To run them:\n {2}run the browser suite as root: sudo npm run test:browser$/m);
    const both = ciFailureMessage('test/browser/netns.test.ts', [chromium, netns]);
    expect(both).toMatch(/Install them with: (sudo )?apt-get install -y chromium; and run the browser suite as root: sudo npm run test:browser$/);
    expect(skipSummary([], { ci: false, missing: [netns] })).toBeNull();
  });
});
