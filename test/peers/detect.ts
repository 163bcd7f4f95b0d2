/**
 * Which real test peers (BoringSSL, the OpenSSL CLI, Knot, BIND, Chromium,
 * network namespaces, certutil) this machine has.
 *
 * The peers and their Debian packages are listed once, in
 * test/peers/debian-packages.txt (also read by .ci/run). A test file declares
 * the peers it needs with `// @module-tag peer-<id>` lines; the vitest configs
 * (through test/helpers/peers.ts) skip a file whose peer is missing, unless
 * CI is set, where a missing peer is a failure.
 *
 * ECH_TEST_HIDE_PEERS=boringssl,knot (or `all`) makes detection report those
 * peers missing although they are installed, so the fresh-machine behaviour
 * can be tested on a machine that has every peer.
 *
 * No vitest here: plain Node, synchronous, no child processes.
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { INCLUDE_DIR, LIB_DIR } from './boringssl.js';

const HERE = dirname(fileURLToPath(import.meta.url));
/** The one list of peers and their Debian packages (read by .ci/run too). */
export const PACKAGES_FILE = join(HERE, 'debian-packages.txt');

/** Every peer a test can declare. */
export const PEER_IDS = ['boringssl', 'openssl', 'knot', 'bind', 'chromium', 'netns', 'certutil', 'curl', 'etcd'] as const;
/** One of {@link PEER_IDS}. */
export type PeerId = (typeof PEER_IDS)[number];

/** Environment variable that makes detection report peers missing (comma list, or `all`). */
export const HIDE_ENV = 'ECH_TEST_HIDE_PEERS';
/** Prefix of the vitest tag a test file declares a peer with: `// @module-tag peer-boringssl`. */
export const PEER_TAG_PREFIX = 'peer-';

/** What detection found for one peer. */
export interface PeerStatus {
  id: PeerId;
  /** What the peer is, for messages. */
  description: string;
  /** Debian packages that provide it (from debian-packages.txt). */
  packages: string[];
  /** Why it is missing, or null when present. */
  missing: string | null;
  /** Missing only because this process is not root (installing packages would not help). */
  rootOnly: boolean;
}

const DESCRIPTIONS: Record<PeerId, string> = {
  boringssl: 'BoringSSL (android-libboringssl) and gcc to build test/peers/boringssl/harness.c',
  openssl: 'the OpenSSL command line tool (s_client/s_server, openssl verify, the browser page-load PKI)',
  knot: 'Knot DNS (knotd) and kdig',
  bind: 'BIND (named)',
  chromium: 'Chromium',
  netns: 'network namespaces: root and ip (iproute2)',
  certutil: 'certutil (NSS tools)',
  curl: 'curl (a TLS 1.2 client)',
  etcd: 'etcd and etcdctl (fleet mode)',
};

/** The reason a peer that needs root gives when the process is not root. */
export const NOT_ROOT = 'not running as root (network namespaces need root: sudo npm run test:browser)';

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

function isFile(path: string): boolean {
  try {
    return statSync(path).isFile();
  } catch {
    return false;
  }
}

/** The first executable `name` on PATH or in the system bin/sbin directories, or null. */
export function findExecutable(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of [...(env['PATH'] ?? '').split(':').filter(Boolean), ...SYSTEM_DIRS]) {
    const p = join(dir, name);
    if (isExecutableFile(p)) return p;
  }
  return null;
}

function needExecutables(names: string[], env: NodeJS.ProcessEnv): string[] {
  return names.filter((n) => findExecutable(n, env) === null).map((n) => `${n} not found on PATH`);
}

/** Reasons the peer is missing (empty when present). */
function check(id: PeerId, env: NodeJS.ProcessEnv): string[] {
  switch (id) {
    case 'boringssl': {
      const reasons: string[] = [];
      for (const path of [
        join(INCLUDE_DIR, 'openssl', 'ssl.h'),
        join(INCLUDE_DIR, 'openssl', 'hpke.h'),
        join(LIB_DIR, 'libssl.so'),
        join(LIB_DIR, 'libcrypto.so'),
      ]) {
        if (!isFile(path)) reasons.push(`${path} not found`);
      }
      reasons.push(...needExecutables(['gcc'], env));
      if (!isFile('/usr/include/stdio.h')) reasons.push('C library headers (/usr/include/stdio.h) not found');
      return reasons;
    }
    case 'openssl':
      return needExecutables(['openssl'], env);
    case 'knot':
      return needExecutables(['knotd', 'kdig'], env);
    case 'bind':
      return needExecutables(['named'], env);
    case 'chromium': {
      const bin = env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
      return isExecutableFile(bin) ? [] : [`${bin} not found`];
    }
    case 'netns': {
      const reasons = needExecutables(['ip'], env);
      if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
        reasons.push(NOT_ROOT);
      }
      return reasons;
    }
    case 'certutil':
      return needExecutables(['certutil'], env);
    case 'curl':
      return needExecutables(['curl'], env);
    case 'etcd':
      return needExecutables(['etcd', 'etcdctl'], env);
  }
}

function isPeerId(s: string): s is PeerId {
  return (PEER_IDS as readonly string[]).includes(s);
}

/**
 * Reads debian-packages.txt: one peer a line, `<peer> <package>...`, `#`
 * comments. Throws unless it lists exactly the peers of {@link PEER_IDS}.
 */
export function readPeerPackages(file = PACKAGES_FILE): Map<PeerId, string[]> {
  const map = new Map<PeerId, string[]>();
  for (const [i, raw] of readFileSync(file, 'utf8').split('\n').entries()) {
    const words = raw.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
    const [id, ...packages] = words;
    if (id === undefined) continue;
    if (!isPeerId(id)) throw new Error(`${file}:${i + 1}: unknown peer ${JSON.stringify(id)} (known: ${PEER_IDS.join(', ')})`);
    if (packages.length === 0) throw new Error(`${file}:${i + 1}: peer ${id} lists no package`);
    if (map.has(id)) throw new Error(`${file}:${i + 1}: peer ${id} listed twice`);
    map.set(id, packages);
  }
  const absent = PEER_IDS.filter((id) => !map.has(id));
  if (absent.length > 0) throw new Error(`${file}: no packages listed for ${absent.join(', ')}`);
  return map;
}

/** The peers ECH_TEST_HIDE_PEERS hides. Throws on an unknown name (a typo would hide nothing). */
export function hiddenPeers(env: NodeJS.ProcessEnv = process.env): Set<PeerId> {
  const value = (env[HIDE_ENV] ?? '').trim();
  if (value === '') return new Set();
  if (value === 'all') return new Set(PEER_IDS);
  const hidden = new Set<PeerId>();
  for (const name of value.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!isPeerId(name)) throw new Error(`${HIDE_ENV}: unknown peer ${JSON.stringify(name)} (known: ${PEER_IDS.join(', ')}, or all)`);
    hidden.add(name);
  }
  return hidden;
}

/** Detects every peer (ECH_TEST_HIDE_PEERS applied). */
export function detectPeers(env: NodeJS.ProcessEnv = process.env): PeerStatus[] {
  const packages = readPeerPackages();
  const hidden = hiddenPeers(env);
  return PEER_IDS.map((id) => {
    const reasons = hidden.has(id) ? [`hidden by ${HIDE_ENV}`] : check(id, env);
    return {
      id,
      description: DESCRIPTIONS[id],
      packages: packages.get(id) ?? [],
      missing: reasons.length > 0 ? reasons.join('; ') : null,
      rootOnly: reasons.length > 0 && reasons.every((r) => r === NOT_ROOT),
    };
  });
}

/** CI mode (a missing peer fails the run): CI is set to anything but "", "0" or "false". */
export function isCi(env: NodeJS.ProcessEnv = process.env): boolean {
  const v = env['CI'];
  return v !== undefined && v !== '' && v !== '0' && v.toLowerCase() !== 'false';
}

/** The one command that installs the packages of `peers` (deduplicated, in list order). */
export function installCommand(peers: readonly Pick<PeerStatus, 'packages'>[]): string {
  const packages = [...new Set(peers.flatMap((p) => p.packages))];
  const sudo = typeof process.getuid === 'function' && process.getuid() === 0 ? '' : 'sudo ';
  return `${sudo}apt-get install -y ${packages.join(' ')}`;
}

/** The vitest tag of a peer: `peer-<id>`. */
export function peerTag(id: PeerId): string {
  return `${PEER_TAG_PREFIX}${id}`;
}

/** The peers named by a test file's tags (other tags ignored). */
export function peersOfTags(tags: readonly string[]): PeerId[] {
  return tags
    .filter((t) => t.startsWith(PEER_TAG_PREFIX))
    .map((t) => t.slice(PEER_TAG_PREFIX.length))
    .filter(isPeerId);
}
