// Fleet mode end to end, real processes on loopback: a 3-member etcd
// cluster, Knot, and `ech-server serve` front ends sharing one fleet config
// (one KEK). Peers: etcd (etcd-server etcd-client), knot, boringssl, openssl.
// (On main, tag this file with the module tags peer-etcd, peer-knot, peer-boringssl, peer-openssl.)
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
const LEASE_TTL = 4;

let dir: string;
let pki: TestPki;
let etcd: EtcdCluster;
let dns: TestDnsServer;
let client: Etcd3;
const fe = new Map<string, ServeProcess>();
const imported = generateEchKey({ publicName: 'cover.example', configId: 0x11 });
let baseConfig: Record<string, unknown>;

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
    fleet: { etcd: { endpoints: etcd.endpoints }, prefix: PREFIX, member: 'x', kekFile: 'fleet.kek', leaseTtl: LEASE_TTL, ticketPeriod: 30 },
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
    await until(async () => {
      const s = await fleetStatusCli();
      const ids = (s['members'] as { ticketIds: string[] }[]).map((m) => m.ticketIds[0]);
      return ids.length === 3 && ids.every((x) => x && x === ids[0]) ? true : undefined;
    }, 'the three members to hold the same ticket key');
    const first = await nodeTls(fe.get('fe-a')!);
    expect(first.reused).toBe(false);
    expect(first.session).toBeDefined();
    for (const name of ['fe-b', 'fe-c']) {
      const again = await nodeTls(fe.get(name)!, first.session);
      expect(again.reused, name).toBe(true);
    }
  });
});
