// @module-tag peer-etcd
// @module-tag peer-knot
// @module-tag peer-boringssl
// Fleet mode end to end, real processes on loopback: a 3-member etcd
// cluster, Knot, and `ech-server serve` front ends sharing one fleet config
// (one KEK). Peers: etcd (etcd-server etcd-client), knot, boringssl.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import tls from 'node:tls';
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { Etcd3 } from 'etcd3';
import { buildHarness, runClient } from './peers/boringssl.js';
import { type TestDnsServer, kdig, startKnot } from './peers/dns-server.js';
import { type EtcdCluster, ETCD_INSTALL_HINT, etcdAvailable, startEtcdCluster } from './peers/etcd.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';
import { generateEchKey } from '../src/keys/generate.js';
import { writeEchKeyFile } from '../src/keys/files.js';
import { kemPrivateKeyToPkcs8 } from '../src/crypto/kem.js';
import { writeNewKekFile } from '../src/fleet/kek.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const PREFIX = '/ech-server/test';
const LEASE_TTL = 6;

let dir: string;
let pki: TestPki;
let etcd: EtcdCluster;
let dns: TestDnsServer;
let client: Etcd3;
const fe = new Map<string, ServeProcess>();
const imported = generateEchKey({ publicName: 'cover.example', configId: 0x11 });
let baseConfig: Record<string, unknown>;
let firstTicketId: string | undefined;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(f: () => Promise<T | undefined> | T | undefined, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(100);
  }
}

/** The ECHConfigList Knot serves for secret.example.test (base64), if any. */
const knotList = (): string | undefined => /ech=(\S+)/.exec(kdig(dns, 'secret.example.test', 'HTTPS'))?.[1]?.replace(/"/g, '');

function fleetConfig(member: string, over: Record<string, unknown> = {}): Record<string, unknown> {
  const c = structuredClone(baseConfig);
  (c['fleet'] as Record<string, unknown>)['member'] = member;
  return { ...c, ...over };
}

async function startMember(member: string, over: Record<string, unknown> = {}): Promise<ServeProcess> {
  const p = await startServe(dir, fleetConfig(member, over), 40_000);
  fe.set(member, p);
  return p;
}

const adminPort = (p: ServeProcess) => Number(/"admin":(\d+)/.exec(p.output())![1]);
const httpGet = (port: number, path: string) =>
  new Promise<{ status: number; body: string }>((res, rej) => {
    http
      .get({ host: '127.0.0.1', port, path }, (r) => {
        let body = '';
        r.on('data', (d) => (body += d));
        r.on('end', () => res({ status: r.statusCode!, body }));
      })
      .on('error', rej);
  });

/** A plain TLS 1.3 connection (Node's client); resolves with the session ticket it got and whether it resumed. */
function nodeTls(p: ServeProcess, session?: Buffer): Promise<{ session: Buffer | undefined; reused: boolean }> {
  return new Promise((res, rej) => {
    let got: Buffer | undefined;
    let reused = false;
    const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'secret.example.test', ca: readFileSync(join(pki.dir, 'ca.pem')), minVersion: 'TLSv1.3', ...(session ? { session } : {}) });
    const t = setTimeout(() => {
      s.destroy();
      rej(new Error('TLS connection timed out'));
    }, 10_000);
    s.on('session', (x: Buffer) => (got ??= x));
    s.once('secureConnect', () => {
      reused = s.isSessionReused();
      s.write(GET);
    });
    s.on('data', () => undefined);
    s.on('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
    s.on('close', () => {
      clearTimeout(t);
      res({ session: got, reused });
    });
  });
}

/** A TLS connection left open after its handshake; `request()` sends GET and resolves with the response. */
function openTls(p: ServeProcess): Promise<{ name: string; request(): Promise<string> }> {
  return new Promise((res, rej) => {
    const s = tls.connect({ host: '127.0.0.1', port: p.port, servername: 'secret.example.test', ca: readFileSync(join(pki.dir, 'ca.pem')) });
    let body = '';
    let closed = false;
    s.on('data', (d) => (body += d));
    s.on('close', () => (closed = true));
    s.once('error', rej);
    s.once('secureConnect', () =>
      res({
        name: String(p.port),
        request: () =>
          new Promise<string>((ok, bad) => {
            if (closed) return bad(new Error('the connection was closed'));
            s.write(GET);
            const t = setTimeout(() => bad(new Error('no answer')), 10_000);
            s.once('close', () => {
              clearTimeout(t);
              ok(body);
            });
          }),
      }),
    );
  });
}

const GET = 'GET / HTTP/1.1\r\nHost: secret.example.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n';
const ech = (p: ServeProcess, echConfigList: string, retry = false) =>
  runClient({ port: p.port, sni: 'secret.example.test', echConfigList, ca: join(pki.dir, 'ca.pem'), retry, send: GET, read: true });

/** `fleet_published` log lines of every front end so far. */
function publishes(): { key: string; count: number; echConfigList: string; member: string }[] {
  const out = [];
  for (const p of fe.values()) {
    for (const line of p.output().split('\n')) {
      if (!line.includes('"fleet_published"')) continue;
      out.push(JSON.parse(line) as { key: string; count: number; echConfigList: string; member: string });
    }
  }
  return out.sort((a, b) => a.count - b.count);
}

interface StateKey {
  id: string;
  configId: number;
  created: number;
  published: number | null;
  withdrawn: number | null;
}
async function state(): Promise<{ keys: StateKey[]; waitingFor: string[]; publishCount: number; nextRotation: number }> {
  return JSON.parse((await client.get(`${PREFIX}/state`).string())!) as { keys: StateKey[]; waitingFor: string[]; publishCount: number; nextRotation: number };
}
const leader = () => client.namespace(`${PREFIX}/`).election('leader').leader();

async function fleetStatusCli(member = 'fe-a'): Promise<Record<string, unknown>> {
  const file = join(dir, `status-${member}.json`);
  await writeFile(file, JSON.stringify(fleetConfig(member)));
  const r = await promisify(execFile)(process.execPath, [BIN, 'fleet', 'status', '--config', file]);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

beforeAll(async () => {
  if (!etcdAvailable()) throw new Error(ETCD_INSTALL_HINT);
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-fleet-'));
  pki = makePki();
  const cover = pki.leaf('ec', ['cover.example']);
  const secret = pki.leaf('ec', ['secret.example.test']);
  await mkdir(join(dir, 'keys'), { mode: 0o700 });
  await writeEchKeyFile(join(dir, 'keys', 'imported.pem'), imported.config, imported.privateKeyRaw);
  await writeNewKekFile(join(dir, 'fleet.kek'));
  [etcd, dns] = await Promise.all([startEtcdCluster(3), startKnot({ zone: 'example.test', records: ['secret 300 HTTPS 1 . alpn=h2'] })]);
  client = new Etcd3({ hosts: etcd.endpoints });
  baseConfig = {
    listen: '127.0.0.1:0',
    admin: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'secret.example.test', cert: secret.certPath, key: secret.keyPath, respond: 'ech-status' }],
    rotation: {
      publicName: 'cover.example',
      period: 10,
      ttl: 1,
      margin: 2,
      publishDelay: 2,
      retryInterval: 1,
      names: ['secret.example.test'],
      publisher: { type: 'rfc2136', server: dns.address, zone: dns.zone, tsig: { name: dns.updateKey.name, secret: dns.updateKey.secret }, timeoutMs: 1000 },
    },
    fleet: { etcd: { endpoints: etcd.endpoints }, prefix: PREFIX, member: 'x', kekFile: 'fleet.kek', leaseTtl: LEASE_TTL, ticketPeriod: 20 },
  };
  // A first, then B and C: A imports the key directory.
  await startMember('fe-a');
  await Promise.all([startMember('fe-b'), startMember('fe-c')]);
}, 90_000);

afterAll(async () => {
  await Promise.all([...fe.values()].map((p) => p.stop()));
  client?.close();
  await etcd?.stop();
  await dns?.stop();
  pki?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('fleet mode', () => {
  it('the first leader imports the key directory; a BoringSSL client with the list Knot serves is accepted by each of the three', async () => {
    const list = await until(knotList, 'Knot to serve a list');
    for (const name of ['fe-a', 'fe-b', 'fe-c']) {
      const r = await ech(fe.get(name)!, list);
      expect(r.error, name).toBeNull();
      expect(r.echAccepted, name).toBe(true);
    }
    expect(fe.get('fe-a')!.output()).toMatch(/"event":"fleet_keys_imported"/);
  });

  it('a session ticket issued by front end A resumes on B and on C (ticket keys come from etcd)', async () => {
    // Every member has loaded the same ticket key (member records).
    firstTicketId = await until(async () => {
      const s = await fleetStatusCli();
      const ids = (s['members'] as { ticketIds: string[] }[]).map((m) => m.ticketIds[0]);
      return ids.length === 3 && ids.every((x) => x && x === ids[0]) ? ids[0] : undefined;
    }, 'the three members to hold the same ticket key');
    const first = await nodeTls(fe.get('fe-a')!);
    expect(first.reused).toBe(false);
    expect(first.session).toBeDefined();
    for (const name of ['fe-b', 'fe-c']) {
      const again = await nodeTls(fe.get(name)!, first.session);
      expect(again.reused, name).toBe(true);
    }
  });

  it('rotation: Knot serves the new list only once all three members report the key; a member that does not report blocks it and is reported', async () => {
    const lead = (await leader())!;
    const stopped = ['fe-a', 'fe-b', 'fe-c'].find((n) => n !== lead)!;
    // A quiet moment: every key published, the next one due in more than 1.5 s.
    const st = await until(async () => {
      const x = await state();
      return x.keys.every((k) => k.published !== null) && x.nextRotation - Date.now() > 1500 ? x : undefined;
    }, 'a moment between rotations', 25_000);
    // Pause one follower just before the next key is due, so it cannot load it.
    await sleep(Math.max(0, st.nextRotation - Date.now() - 800));
    const paused = fe.get(stopped)!.child;
    paused.kill('SIGSTOP');
    const before = knotList()!;
    expect(before).toBe((await fleetStatusCli())['published']);
    let resumed = false;
    try {
      const pending = await until(async () => (await state()).keys.find((k) => k.published === null), 'a new pending key', 15_000);
      // The members that run apply it from the watch, and report it, within 2 s of its creation.
      for (const name of ['fe-a', 'fe-b', 'fe-c'].filter((n) => n !== stopped)) {
        const rec = await until(async () => {
          const r = JSON.parse((await client.get(`${PREFIX}/members/${name}`).string()) ?? '{"keyIds":[]}') as { keyIds: string[]; at: number };
          return r.keyIds.includes(pending.id) ? r : undefined;
        }, `${name} to report the new key`, 5000);
        expect(rec.at - pending.created, name).toBeLessThanOrEqual(2000);
      }
      // publishDelay (2 s) passes; the key stays unpublished while one member lacks it.
      await sleep(3000);
      const s2 = await state();
      expect(s2.keys.find((k) => k.id === pending.id)!.published).toBeNull();
      expect(s2.waitingFor).toEqual([stopped]);
      expect(knotList()).toBe(before);
      const lp = fe.get(lead)!;
      expect(lp.output()).toMatch(new RegExp(`"event":"fleet_waiting_for_members".*"key":"${pending.id}".*"members":\\["${stopped}"\\]`));
      const metrics = await httpGet(adminPort(lp), '/metrics');
      expect(metrics.body).toContain(`ech_fleet_member_not_ready{member="${stopped}"} 1`);
      paused.kill('SIGCONT');
      resumed = true;
      const after = await until(() => {
        const l = knotList();
        return l !== before ? l : undefined;
      }, 'Knot to serve the new list', 10_000);
      // What Knot serves is the pending key, published after every member reported it.
      const status = await fleetStatusCli();
      expect(status['published']).toBe(after);
      expect(status['leader']).toBe(lead);
      expect(Date.parse(status['nextRotation'] as string)).toBeGreaterThan(Date.now());
      for (const m of status['members'] as { name: string; keyIds: string[] }[]) expect(m.keyIds, m.name).toContain(pending.id);
      expect(publishes().at(-1)!.key).toBe(pending.id);
      for (const name of ['fe-a', 'fe-b', 'fe-c']) expect((await ech(fe.get(name)!, after)).echAccepted, name).toBe(true);

      // A client still holding the old list: once the old key is retired
      // (ttl + margin after the publish), every member rejects it with
      // retry_configs equal to what Knot serves, and the retry is accepted.
      for (const name of ['fe-a', 'fe-b', 'fe-c']) {
        const r = await until(async () => {
          const k1 = knotList();
          const x = await ech(fe.get(name)!, before, true);
          return x.retried ? { x, k1, k2: knotList() } : undefined;
        }, `${name} to retire the old key`, 15_000);
        expect(r.x.first!.echRejected, name).toBe(true);
        expect([r.k1, r.k2], name).toContain(r.x.firstRetryConfigs);
        expect(r.x.echAccepted, name).toBe(true);
      }
    } finally {
      if (!resumed) paused.kill('SIGCONT');
    }
  }, 60_000);

  it('kill the leader during a rotation: another member leads within the lease TTL and finishes it; nothing published twice or out of order', async () => {
    const pending = await until(async () => (await state()).keys.find((k) => k.published === null), 'the next pending key', 20_000);
    const old = (await leader())!;
    const killedAt = Date.now();
    fe.get(old)!.child.kill('SIGKILL');
    const next = await until(async () => {
      const l = await leader();
      return l && l !== old ? l : undefined;
    }, 'a new leader', (LEASE_TTL + 5) * 1000);
    const took = Date.now() - killedAt;
    expect(took).toBeLessThanOrEqual(LEASE_TTL * 1000 + 1500);
    await until(async () => (await state()).keys.find((k) => k.id === pending.id)?.published ?? undefined, 'the new leader to publish the pending key', 20_000);
    const list = await until(() => {
      const l = knotList();
      const p = publishes().find((x) => x.key === pending.id);
      return p && l === p.echConfigList ? l : undefined;
    }, 'Knot to serve it', 10_000);
    expect(publishes().find((x) => x.key === pending.id)!.member).toBe(next);
    // Every publish of the run, from every member's log (the killed one's too): each key once, in key order, counts 1..n.
    const all = publishes();
    expect(all.map((p) => p.count)).toEqual(all.map((_, i) => i + 1));
    expect(new Set(all.map((p) => p.key)).size).toBe(all.length);
    expect([...all.map((p) => p.key)].sort()).toEqual(all.map((p) => p.key));
    expect((await state()).publishCount).toBe(all.length);
    for (const name of ['fe-a', 'fe-b', 'fe-c'].filter((n) => n !== old)) expect((await ech(fe.get(name)!, list)).echAccepted, name).toBe(true);
  }, 60_000);

  it('a front end started later gets the keys within 2 s of joining and is accepted', async () => {
    const list = await until(knotList, 'a published list');
    const d = await startMember('fe-d');
    const joined = JSON.parse(d.output().split('\n').find((l) => l.includes('"fleet_joined"'))!) as { ms: number; keys: string[] };
    expect(joined.ms).toBeLessThan(2000);
    expect(joined.keys.length).toBeGreaterThan(0);
    const r = await ech(d, list);
    expect(r.echAccepted).toBe(true);
  }, 60_000);

  it('quorum lost (two etcd members stopped): every front end keeps accepting ECH and reports it; back: rotation resumes', async () => {
    const live = ['fe-a', 'fe-b', 'fe-c', 'fe-d'].filter((n) => fe.get(n)!.child.exitCode === null && fe.get(n)!.child.signalCode === null);
    const list = await until(knotList, 'a published list');
    // Connections open across the outage (handshake done, request not sent yet).
    const open = await Promise.all(live.map((name) => openTls(fe.get(name)!)));
    await Promise.all([etcd.members[0]!.stop(), etcd.members[1]!.stop()]);
    const countBefore = publishes().length;
    for (const name of live) {
      const h = await until(async () => {
        const x = await httpGet(adminPort(fe.get(name)!), '/healthz');
        return x.body.includes('"etcd":"unavailable"') ? x : undefined;
      }, `${name} to report etcd unavailable`, 15_000);
      expect(h.status).toBe(200);
      expect((await httpGet(adminPort(fe.get(name)!), '/metrics')).body).toMatch(/ech_fleet_etcd_up\{member="[^"]+"\} 0/);
    }
    for (const name of live) {
      const r = await ech(fe.get(name)!, list);
      expect(r.echAccepted, name).toBe(true);
    }
    expect(fe.get(live[0]!)!.output()).toMatch(/"event":"fleet_etcd_unavailable"/);
    etcd.members[0]!.start();
    etcd.members[1]!.start();
    for (const name of live) {
      await until(async () => ((await httpGet(adminPort(fe.get(name)!), '/healthz')).body.includes('"etcd":"ok"') ? true : undefined), `${name} to see etcd again`, 20_000);
    }
    // No connection was dropped: each still answers its request.
    for (const c of open) expect(await c.request(), c.name).toMatch(/^HTTP\/1\.1 200/);
    // Leases expired during the outage: the election and the member records
    // come back first, then the leader's schedule runs. On a loaded CI
    // machine (two test files at once on two cores) that took over 30 s once.
    try {
      await until(() => (publishes().length > countBefore ? true : undefined), 'the rotation to resume (a new publish)', 60_000);
    } catch (e) {
      const tail = (name: string) => fe.get(name)!.output().split('\n').filter((l) => l.includes('"event":"fleet_')).slice(-8).join('\n');
      throw new Error(`${(e as Error).message}\n${live.map((n) => `--- ${n}\n${tail(n)}`).join('\n')}`);
    }
    const now = await until(knotList, 'a list');
    for (const name of live) expect((await ech(fe.get(name)!, now)).echAccepted, name).toBe(true);
  }, 150_000);

  it('ticket keys rotate for the whole fleet: a new one seals on every member, and its tickets resume across members', async () => {
    expect(firstTicketId).toBeDefined();
    await until(async () => {
      const ms = (await fleetStatusCli())['members'] as { name: string; ticketIds: string[] }[];
      const ids = ms.map((m) => m.ticketIds[0]);
      return ids.length >= 3 && ids.every((x) => x && x === ids[0] && x !== firstTicketId) ? true : undefined;
    }, 'a ticket key rotation', 30_000);
    const live = ['fe-a', 'fe-b', 'fe-c', 'fe-d'].filter((n) => fe.get(n)!.child.exitCode === null && fe.get(n)!.child.signalCode === null);
    const t = await nodeTls(fe.get(live[0]!)!);
    expect((await nodeTls(fe.get(live[1]!)!, t.session)).reused).toBe(true);
  }, 40_000);

  it('etcd holds no private key in the clear: no PEM, no raw or PKCS#8 bytes of the imported key, not the KEK', async () => {
    const all = await client.getAll().buffers();
    const values = Object.values(all);
    expect(values.length).toBeGreaterThan(5);
    const needles = [
      Buffer.from('-----BEGIN'),
      Buffer.from(imported.privateKeyRaw),
      Buffer.from(kemPrivateKeyToPkcs8(imported.config.kemId, imported.privateKeyRaw)),
      Buffer.from(imported.privateKeyRaw).subarray(0, 16),
      Buffer.from((readFileSync(join(dir, 'fleet.kek'), 'utf8')).trim(), 'base64'),
    ];
    for (const v of values) {
      for (const n of needles) expect(v.includes(n)).toBe(false);
      // base64 forms too (records are JSON)
      for (const n of needles.slice(1)) expect(v.includes(Buffer.from(n.toString('base64')))).toBe(false);
    }
    // The sealed records are there, and the imported key's public config is readable.
    expect(Object.keys(all).some((k) => k.startsWith(`${PREFIX}/ech/`))).toBe(true);
    expect(Object.keys(all).some((k) => k.startsWith(`${PREFIX}/tickets/`))).toBe(true);
  });

  it('a member with another KEK refuses to start, one line naming fleet.kekFile', async () => {
    await writeNewKekFile(join(dir, 'other.kek'));
    const c = fleetConfig('fe-x');
    (c['fleet'] as Record<string, unknown>)['kekFile'] = 'other.kek';
    const err = await startServe(dir, c, 20_000).then(
      () => undefined,
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exited with 1: .*fleet\.kekFile: .*kek-check does not open with the KEK in .*other\.kek/);
    expect(err).not.toMatch(/\n\s+at /);
  });

  it('wrong DNS credentials are found at start in fleet mode too (any member may become the leader)', async () => {
    const c = fleetConfig('fe-y');
    const rot = c['rotation'] as { publisher: { tsig: { secret: string } } };
    rot.publisher.tsig.secret = Buffer.alloc(32, 9).toString('base64');
    const err = await startServe(dir, c, 20_000).then(
      () => undefined,
      (e: Error) => e.message,
    );
    expect(err).toMatch(/exited with 1: .*rotation\.publisher: the publisher check failed/);
  });
});
