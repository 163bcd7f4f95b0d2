/**
 * Real authoritative DNS servers for tests: Debian's Knot DNS (`knotd`) or
 * BIND (`named`), with a generated config and zone in a temporary directory,
 * listening on 127.0.0.1:<free port>, with two TSIG keys: one allowed to
 * update the zone, one allowed to update TXT records only.
 *
 * A missing server is an error, never a skip: CI installs them (apt packages
 * `knot`, `knot-dnsutils` and `bind9`), and a test that silently did not talk
 * to a real server would prove nothing. (Outside CI, a test file tagged
 * peer-knot / peer-bind is skipped before it gets here when detection finds
 * no server: test/peers/detect.ts, test/helpers/peers.ts.)
 *
 * The server is started as a child process tracked by PID, readiness is
 * polled with an SOA query, and stop() kills it by that PID (SIGTERM, then
 * SIGKILL); a process 'exit' hook kills it as a last resort.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';

export const INSTALL_HINT = 'install the DNS servers with: apt-get install -y knot knot-dnsutils bind9';

function findBinary(name: string, dirs = ['/usr/sbin', '/usr/bin', '/sbin', '/bin']): string {
  for (const d of [...(process.env['PATH'] ?? '').split(':').filter(Boolean), ...dirs]) {
    const p = join(d, name);
    if (existsSync(p)) return p;
  }
  throw new Error(`${name} not found; ${INSTALL_HINT}`);
}

/** A TSIG key configured on the test server. */
export interface TestTsigKey {
  name: string;
  secret: string;
}

export type DnsServerKind = 'knot' | 'bind';

export interface TestDnsServer {
  kind: DnsServerKind;
  host: string;
  port: number;
  /** `127.0.0.1:PORT`. */
  address: string;
  zone: string;
  pid: number;
  /** Allowed to update the zone. */
  updateKey: TestTsigKey;
  /** Known to the server, but with no update permission. */
  readOnlyKey: TestTsigKey;
  dir: string;
  /** The server's log so far (for failure messages). */
  log(): string;
  stop(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 that is also free for UDP. */
async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = (s.address() as { port: number }).port;
        s.close(() => resolve(p));
      });
    });
    const udpFree = await new Promise<boolean>((resolve) => {
      const u = createSocket('udp4');
      u.once('error', () => resolve(false));
      u.bind(port, '127.0.0.1', () => u.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
  throw new Error('no free port');
}

/** One SOA query; resolves true on an authoritative NOERROR answer. */
function soaReady(port: number, zone: string): Promise<boolean> {
  return new Promise((resolve) => {
    const u = createSocket('udp4');
    const id = randomBytes(2).readUInt16BE(0);
    const t = setTimeout(() => {
      u.close();
      resolve(false);
    }, 200);
    u.on('error', () => {
      clearTimeout(t);
      u.close();
      resolve(false);
    });
    u.on('message', (m) => {
      const p = dnsPacket.decode(m);
      if (p.id !== id) return;
      clearTimeout(t);
      u.close();
      resolve((p as { rcode?: string }).rcode === 'NOERROR' && (p.answers ?? []).some((a) => a.type === 'SOA'));
    });
    u.send(dnsPacket.encode({ type: 'query', id, questions: [{ type: 'SOA', name: zone }] }), port, '127.0.0.1');
  });
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const c of live) if (c.pid) try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
});

/** Knot's config: Knot answers NOTAUTH+BADKEY for a key no ACL allows the action for. */
function knotConfig(dir: string, port: number, zone: string, updateKey: TestTsigKey, readOnlyKey: TestTsigKey): string {
  return `server:
    rundir: "${dir}"
    listen: 127.0.0.1@${port}
log:
  - target: stderr
    any: info
database:
    storage: "${dir}/db"
key:
  - id: ${updateKey.name}
    algorithm: hmac-sha256
    secret: ${updateKey.secret}
  - id: ${readOnlyKey.name}
    algorithm: hmac-sha256
    secret: ${readOnlyKey.secret}
acl:
  - id: ech-update
    key: ${updateKey.name}
    action: update
  - id: ech-readonly
    key: ${readOnlyKey.name}
    action: update
    update-type: TXT
template:
  - id: default
    storage: "${dir}"
    file: "%s.zone"
    zonefile-sync: -1
    journal-content: changes
zone:
  - domain: ${zone}.
    acl: [ech-update, ech-readonly]
`;
}

/** BIND's config: update-policy grants, no rndc, no recursion. */
function bindConfig(dir: string, port: number, zone: string, updateKey: TestTsigKey, readOnlyKey: TestTsigKey): string {
  return `options {
  directory "${dir}";
  pid-file "${dir}/named.pid";
  listen-on port ${port} { 127.0.0.1; };
  listen-on-v6 { none; };
  recursion no;
  dnssec-validation no;
  notify no;
};
controls { };
key "${updateKey.name}" { algorithm hmac-sha256; secret "${updateKey.secret}"; };
key "${readOnlyKey.name}" { algorithm hmac-sha256; secret "${readOnlyKey.secret}"; };
zone "${zone}" {
  type primary;
  file "${dir}/${zone}.zone";
  update-policy { grant ${updateKey.name} zonesub ANY; grant ${readOnlyKey.name} zonesub TXT; };
};
`;
}

/**
 * Start an authoritative server for `zone` holding `records` (zone-file
 * lines relative to the zone origin, e.g. `www 300 HTTPS 1 . alpn=h2 ech=AAA=`).
 */
export async function startDnsServer(kind: DnsServerKind, opts: { zone: string; records: string[] }): Promise<TestDnsServer> {
  // The free port is chosen before the server binds it; another process may
  // take it in between. Such a start fails fast (bind error in the log), so
  // try again on a new port.
  for (let i = 1; ; i++) {
    try {
      return await startOnce(kind, opts);
    } catch (e) {
      if (i >= 3 || !(e instanceof PortTakenError)) throw e;
    }
  }
}

class PortTakenError extends Error {}

async function startOnce(kind: DnsServerKind, opts: { zone: string; records: string[] }): Promise<TestDnsServer> {
  const binary = findBinary(kind === 'knot' ? 'knotd' : 'named');
  const dir = await mkdtemp(join(tmpdir(), `ech-${kind}-`));
  const port = await freePort();
  const zone = opts.zone.replace(/\.$/, '');
  const updateKey = { name: 'ech-update.', secret: randomBytes(32).toString('base64') };
  const readOnlyKey = { name: 'ech-readonly.', secret: randomBytes(32).toString('base64') };
  const conf = join(dir, kind === 'knot' ? 'knot.conf' : 'named.conf');
  if (kind === 'knot') {
    // Knot 3.2 does not create its database directory; without it every UPDATE is SERVFAIL.
    await mkdir(join(dir, 'db'), { mode: 0o700 });
    await writeFile(conf, knotConfig(dir, port, zone, updateKey, readOnlyKey), { mode: 0o600 });
  } else {
    await writeFile(conf, bindConfig(dir, port, zone, updateKey, readOnlyKey), { mode: 0o600 });
  }
  await writeFile(
    join(dir, `${zone}.zone`),
    [`$ORIGIN ${zone}.`, '$TTL 300', `@ SOA ns.${zone}. hostmaster.${zone}. 1 3600 600 86400 300`, '@ NS ns', 'ns A 127.0.0.1', ...opts.records, ''].join('\n'),
  );
  let log = '';
  // Both run in the foreground (-g for named: also logs to stderr), so the child PID is the server's.
  const args = kind === 'knot' ? ['-c', conf] : ['-g', '-c', conf];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  child.stdout!.on('data', (d: Buffer) => (log += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (log += d.toString()));
  let exited = false;
  const exitPromise = new Promise<void>((resolve) => child.once('exit', () => { exited = true; live.delete(child); resolve(); }));
  const stop = async () => {
    if (!exited && child.pid) {
      process.kill(child.pid, 'SIGTERM');
      const killer = setTimeout(() => { if (!exited && child.pid) process.kill(child.pid, 'SIGKILL'); }, 5000);
      await exitPromise;
      clearTimeout(killer);
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const deadline = Date.now() + 15_000;
    for (;;) {
      if (/address (already )?in use|cannot bind|unable to listen on any configured interfaces/i.test(log)) {
        throw new PortTakenError(`${kind} could not bind 127.0.0.1:${port}:\n${log}`);
      }
      if (exited) throw new Error(`${kind} exited during start-up:\n${log}`);
      if (await soaReady(port, zone)) break;
      if (Date.now() > deadline) throw new Error(`${kind} did not answer on 127.0.0.1:${port} within 15 s:\n${log}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await stop();
    throw e;
  }
  return {
    kind,
    host: '127.0.0.1',
    port,
    address: `127.0.0.1:${port}`,
    zone,
    pid: child.pid!,
    updateKey,
    readOnlyKey,
    dir,
    log: () => log,
    stop,
  };
}

/** Start Knot (see {@link startDnsServer}). */
export function startKnot(opts: { zone: string; records: string[] }): Promise<TestDnsServer> {
  return startDnsServer('knot', opts);
}

/**
 * Run `kdig` against the server (no recursion). Short form: one RDATA per
 * line; otherwise the answer section (`owner TTL IN TYPE RDATA`).
 */
export function kdig(server: TestDnsServer, name: string, type: string, short = true): string {
  const form = short ? ['+short'] : ['+noall', '+answer'];
  const r = spawnSync(findBinary('kdig'), [`@${server.host}`, '-p', String(server.port), '+norec', ...form, name, type], { encoding: 'utf8', timeout: 10_000 });
  if (r.status !== 0) throw new Error(`kdig failed (${r.status}): ${r.stderr}`);
  return r.stdout.trim();
}
