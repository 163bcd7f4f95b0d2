/**
 * Peer requirements of test files, for vitest.
 *
 * A test file that talks to a real peer says so at its top:
 *
 *   // @module-tag peer-boringssl
 *   // @module-tag peer-openssl
 *
 * (vitest's file tags; the peers are those of test/peers/debian-packages.txt).
 * Both vitest configs spread {@link peerTestOptions}, which detects the peers
 * once, in the main process, and then:
 *
 * - outside CI, defines the tag of every missing peer with `skip: true`, so
 *   every test of a file that needs it is skipped and its hooks never run;
 *   the setup file (peer-setup.ts) records the skipped file, and the global
 *   setup (peer-summary.ts) prints ONE summary at the end of the run: the
 *   skipped files, the missing peers and the command that installs them;
 * - with CI set (.ci/run), defines the tags without skip and the setup file
 *   fails each such file with an error naming the missing peers: a missing
 *   peer is a failure there, never a skip.
 *
 * A file-level tag naming an unknown peer is an error (vitest's strictTags).
 */
import { fileURLToPath } from 'node:url';
import type { TestTagDefinition } from 'vitest/config';
import { type PeerId, HIDE_ENV, NOT_ROOT, detectPeers, installCommand, isCi, peerTag } from '../peers/detect.js';

/** A missing peer as the main process detected it. */
export interface MissingPeer {
  id: PeerId;
  description: string;
  reason: string;
  packages: string[];
  /** Missing only because the run is not root: no package to install. */
  rootOnly: boolean;
}

/** Detection result handed to the workers (vitest `provide`). */
export interface PeerReport {
  /** CI mode: a missing peer fails the file. */
  ci: boolean;
  missing: MissingPeer[];
}

/** One test file skipped for missing peers (written by peer-setup.ts). */
export interface SkipRecord {
  /** Path relative to the project root. */
  file: string;
  peers: PeerId[];
}

declare module 'vitest' {
  export interface ProvidedContext {
    echPeers: PeerReport;
    /** Directory the workers write {@link SkipRecord} files into. */
    echPeerSkipDir: string;
  }
}

/** Setup file run before each test file. */
export const PEER_SETUP_FILE = fileURLToPath(new URL('./peer-setup.ts', import.meta.url));
/** Global setup printing the skip summary. */
export const PEER_SUMMARY_FILE = fileURLToPath(new URL('./peer-summary.ts', import.meta.url));

/** The vitest `test` options both configs spread: tags, provide, setupFiles, globalSetup. */
export function peerTestOptions(env: NodeJS.ProcessEnv = process.env): {
  tags: TestTagDefinition[];
  provide: { echPeers: PeerReport };
  setupFiles: string[];
  globalSetup: string[];
} {
  const peers = detectPeers(env);
  const ci = isCi(env);
  const tags: TestTagDefinition[] = peers.map((p) => ({
    name: peerTag(p.id),
    description: `needs ${p.description} (Debian: ${p.packages.join(' ')})`,
    ...(p.missing !== null && !ci ? { skip: true } : {}),
  }));
  const missing = peers.flatMap((p) =>
    p.missing === null ? [] : [{ id: p.id, description: p.description, reason: p.missing, packages: p.packages, rootOnly: p.rootOnly }],
  );
  return { tags, provide: { echPeers: { ci, missing } }, setupFiles: [PEER_SETUP_FILE], globalSetup: [PEER_SUMMARY_FILE] };
}

/** The install command for the peers a package would fix, and the root hint for those that need root. */
function remedies(missing: readonly MissingPeer[]): string[] {
  const installable = missing.filter((m) => !m.rootOnly);
  return [
    ...(installable.length > 0 ? [installCommand(installable)] : []),
    ...(missing.some((m) => m.reason.includes(NOT_ROOT)) ? ['run the browser suite as root: sudo npm run test:browser'] : []),
  ];
}

/** The error a file fails with in CI when a peer it needs is missing. */
export function ciFailureMessage(file: string, missing: readonly MissingPeer[]): string {
  return [
    `${file} needs test peers that are missing (CI is set: a missing peer is a failure, not a skip):`,
    ...missing.map((m) => `  ${m.id}: ${m.description}: ${m.reason}`),
    `Install them with: ${remedies(missing).join('; and ')}`,
  ].join('\n');
}

/** The one summary printed at the end of a run that skipped files, or null when none was skipped. */
export function skipSummary(records: readonly SkipRecord[], report: PeerReport): string | null {
  if (records.length === 0) return null;
  const used = new Set(records.flatMap((r) => r.peers));
  const missing = report.missing.filter((m) => used.has(m.id));
  const files = [...records].sort((a, b) => a.file.localeCompare(b.file));
  const width = Math.max(...files.map((r) => r.file.length));
  const idWidth = Math.max(...missing.map((m) => m.id.length));
  const bar = '='.repeat(78);
  const n = files.length;
  return [
    '',
    bar,
    `PEERS MISSING: ${n} test file${n === 1 ? ' was' : 's were'} SKIPPED, not run.`,
    '',
    'Missing peers:',
    ...missing.map((m) => `  ${m.id.padEnd(idWidth)}  ${m.description}: ${m.reason}`),
    '',
    'Skipped test files (the missing peers each needs):',
    ...files.map((r) => `  ${r.file.padEnd(width)}  ${r.peers.join(', ')}`),
    '',
    missing.some((m) => !m.rootOnly) ? 'Install the missing peers with:' : 'To run them:',
    ...remedies(missing).map((l) => `  ${l}`),
    '',
    `With CI=true (as in .ci/run) a missing peer fails the run instead.${
      missing.some((m) => m.reason.includes(HIDE_ENV)) ? ` Peers hidden by ${HIDE_ENV} count as missing.` : ''
    }`,
    bar,
    '',
  ].join('\n');
}
