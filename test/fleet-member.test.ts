// @module-tag peer-etcd
// Fleet mode in process, against a one-member etcd: the `fleet` config
// section's checks, keyless fleets (etcd holds public configs only), and a
// tampered sealed key (refused, never loaded as garbage).
// (On main, tag this file with the module tag peer-etcd.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3 } from 'etcd3';
import { type EtcdCluster, ETCD_INSTALL_HINT, etcdAvailable, startEtcdCluster } from './peers/etcd.js';
import { validateServeConfig, ServeConfigError } from '../src/front/config.js';
import { generateEchKey } from '../src/keys/generate.js';
import { writeEchKeyFile } from '../src/keys/files.js';
import { formatEchPem } from '../src/keys/pem.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { FleetMember } from '../src/fleet/member.js';
import { writeNewKekFile, type FleetKek } from '../src/fleet/kek.js';
import type { FleetConfig } from '../src/fleet/config.js';
import { fleetStatus } from '../src/fleet/status.js';
import { makePki } from './tls13-helpers.js';

let etcd: EtcdCluster;
let dir: string;
let kek: FleetKek;
let client: Etcd3;
const members: FleetMember[] = [];

beforeAll(async () => {
  if (!etcdAvailable()) throw new Error(ETCD_INSTALL_HINT);
  dir = await mkdtemp(join(tmpdir(), 'ech-fleet-member-'));
  etcd = await startEtcdCluster(1);
  client = new Etcd3({ hosts: etcd.endpoints });
  kek = await writeNewKekFile(join(dir, 'fleet.kek'));
}, 30_000);

afterAll(async () => {
  await Promise.all(members.map((m) => m.close()));
  client?.close();
  await etcd?.stop();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const fleetCfg = (prefix: string, member = 'm1'): FleetConfig => ({ etcd: { endpoints: etcd.endpoints }, prefix, member, kekFile: kek.source, leaseTtl: 3, ticketPeriod: 60 });

const base = { listen: '127.0.0.1:0', publicName: { cert: 'c.pem', key: 'c.key' }, routes: [] };
const fleetSection = { etcd: { endpoints: ['http://127.0.0.1:2379'] }, prefix: '/ech-server/prod', member: 'fe-a', kekFile: 'fleet.kek' };
const err = (raw: unknown) => {
  try {
    validateServeConfig(raw, '/etc/ech');
  } catch (e) {
    expect(e).toBeInstanceOf(ServeConfigError);
    return (e as ServeConfigError).message;
  }
  return 'no error';
};

describe('the fleet config section', () => {
  it('accepts the documented shape; keys and rotation.stateFile become optional; paths resolve against the file', () => {
    const c = validateServeConfig({ ...base, fleet: { ...fleetSection, etcd: { ...fleetSection.etcd, ca: 'ca.pem', cert: 'c.pem', key: 'k.pem', username: 'u', password: 'p' } }, rotation: { publicName: 'cover.example' } }, '/etc/ech');
    expect(c.fleet).toMatchObject({ prefix: '/ech-server/prod', member: 'fe-a', kekFile: '/etc/ech/fleet.kek', leaseTtl: 10, ticketPeriod: 3600, etcd: { ca: '/etc/ech/ca.pem', username: 'u' } });
    expect(c.keys).toBe('');
    expect(err({ ...base, rotation: { publicName: 'cover.example', stateFile: 's' } })).toMatch(/^keys: is required/);
  });

  it('names the field at fault', () => {
    expect(err({ ...base, fleet: { ...fleetSection, etcd: { endpoints: ['127.0.0.1:2379'] } } })).toMatch(/^fleet\.etcd\.endpoints\[0\]: must be an http/);
    expect(err({ ...base, fleet: { ...fleetSection, etcd: { endpoints: [] } } })).toMatch(/^fleet\.etcd\.endpoints: /);
    expect(err({ ...base, fleet: { ...fleetSection, member: 'a b' } })).toMatch(/^fleet\.member: /);
    expect(err({ ...base, fleet: { ...fleetSection, prefix: 'no-slash' } })).toMatch(/^fleet\.prefix: /);
    expect(err({ ...base, fleet: { ...fleetSection, kekFile: undefined } })).toMatch(/^fleet\.kekFile: is required/);
    expect(err({ ...base, fleet: { ...fleetSection, extra: 1 } })).toMatch(/^fleet\.extra: is not a known field/);
    expect(err({ ...base, fleet: { ...fleetSection, etcd: { ...fleetSection.etcd, cert: 'c.pem' } } })).toMatch(/^fleet\.etcd\.key: /);
    expect(err({ ...base, fleet: { ...fleetSection, etcd: { ...fleetSection.etcd, username: 'u' } } })).toMatch(/^fleet\.etcd\.password: /);
    expect(err({ ...base, fleet: { ...fleetSection, leaseTtl: 1 } })).toMatch(/^fleet\.leaseTtl: /);
  });
});

describe('FleetMember against etcd', () => {
  it('keyless: etcd holds only the public ECHConfig and key id; the member decapsulates through privateKeyFor', async () => {
    const key = generateEchKey({ publicName: 'cover.example', configId: 7 });
    const keys = join(dir, 'keyless-keys');
    await mkdir(keys);
    await writeFile(join(keys, 'pub.pem'), formatEchPem({ echConfigList: encodeEchConfigList([key.config]) }));
    const asked: number[] = [];
    const m = new FleetMember({
      config: fleetCfg('/keyless'),
      kek,
      importDirectory: keys,
      privateKeyFor: (config) => {
        asked.push(config.configId);
        return key.privateKey;
      },
    });
    members.push(m);
    await m.start(15_000);
    expect(m.keySet.get(7)?.privateKey).toBe(key.privateKey);
    expect(asked).toEqual([7]);
    const recs = Object.values(await client.getAll().prefix('/keyless/ech/').json()) as { sealed: string | null; config: string }[];
    expect(recs).toHaveLength(1);
    expect(recs[0]!.sealed).toBeNull();
    expect(Buffer.from(recs[0]!.config, 'base64').equals(Buffer.from(key.config.raw))).toBe(true);
  });

  it('a non-keyless member refuses a keyless fleet key, and a tampered sealed key is refused, never loaded', async () => {
    const key = generateEchKey({ publicName: 'cover.example', configId: 9 });
    const keys = join(dir, 'local-keys');
    await mkdir(keys);
    await writeEchKeyFile(join(keys, 'k.pem'), key.config, key.privateKeyRaw);
    const logs: Record<string, unknown>[] = [];
    const a = new FleetMember({ config: fleetCfg('/tamper', 'a'), kek, importDirectory: keys });
    members.push(a);
    await a.start(15_000);
    expect(a.keySet.get(9)).toBeDefined();
    // Flip one byte of the sealed private key in etcd.
    const [path, text] = Object.entries(await client.getAll().prefix('/tamper/ech/').strings())[0]!;
    const rec = JSON.parse(text) as { sealed: string };
    const b = Buffer.from(rec.sealed, 'base64');
    b[b.length - 20]! ^= 1;
    await client.put(path).value(JSON.stringify({ ...rec, sealed: b.toString('base64') }));
    const late = new FleetMember({ config: fleetCfg('/tamper', 'b'), kek, log: (e) => logs.push(e) });
    members.push(late);
    await expect(late.start(3000)).rejects.toThrow(/no ECH keys from etcd .*does not open with the KEK/);
    expect(logs.some((l) => l['event'] === 'fleet_key_unusable')).toBe(true);
    const keyless = new FleetMember({ config: fleetCfg('/keyless', 'c'), kek, log: (e) => logs.push(e) });
    members.push(keyless);
    await expect(keyless.start(3000)).rejects.toThrow(/has no private key \(a keyless fleet\) and this member is not keyless/);
  });

  it('no keys in etcd and no key directory: the first leader generates one as rotation says; it becomes the retry key once every member has it', async () => {
    const published: string[][] = [];
    const m = new FleetMember({
      config: fleetCfg('/generate', 'g1'),
      kek,
      rotation: { publicName: 'gen.example', period: 3600, ttl: 1, names: ['www.example'] },
      publisher: {
        publish: async (names) => {
          published.push([...names]);
        },
      },
    });
    members.push(m);
    await m.start(15_000);
    const state = JSON.parse((await client.get('/generate/state').string())!) as { keys: { id: string; configId: number }[]; nextRotation: number };
    expect(state.keys).toHaveLength(1);
    expect(m.keySet.keys()[0]!.config.publicName).toBe('gen.example');
    expect(state.nextRotation).toBeGreaterThan(Date.now() + 3500_000);
    const active = await (async () => {
      for (let i = 0; i < 100; i++) {
        if (m.keySet.retryConfigs().length) return m.keySet.retryConfigs();
        await new Promise((r) => setTimeout(r, 50));
      }
      return [];
    })();
    expect(active.map((c) => c.configId)).toEqual([state.keys[0]!.configId]);
    expect(published).toEqual([['www.example']]);
  });

  it('etcd over TLS with a client certificate (fleet.etcd.ca/cert/key); without the client certificate etcd refuses', async () => {
    const pki = makePki();
    const server = pki.leaf('ec', ['localhost']);
    const fe = pki.leaf('ec', ['fe-a.fleet']);
    const ca = join(pki.dir, 'ca.pem');
    const secure = await startEtcdCluster(1, { cert: server.certPath, key: server.keyPath, ca, clientCert: fe.certPath, clientKey: fe.keyPath });
    try {
      const key = generateEchKey({ publicName: 'cover.example', configId: 21 });
      const keys = join(dir, 'tls-keys');
      await mkdir(keys);
      await writeEchKeyFile(join(keys, 'k.pem'), key.config, key.privateKeyRaw);
      const config: FleetConfig = { ...fleetCfg('/tls', 'fe-a'), etcd: { endpoints: secure.endpoints, ca, cert: fe.certPath, key: fe.keyPath } };
      const m = new FleetMember({ config, kek, importDirectory: keys });
      members.push(m);
      await m.start(15_000);
      expect(m.keySet.get(21)).toBeDefined();
      const st = await fleetStatus(config);
      expect(st.members.map((x) => x.name)).toEqual(['fe-a']);
      await expect(fleetStatus({ ...config, etcd: { endpoints: secure.endpoints, ca } })).rejects.toThrow(/etcd at https:\/\/localhost:\d+: /);
      await m.close();
    } finally {
      await secure.stop();
      pki.cleanup();
    }
  }, 40_000);

  it('etcd authentication (fleet.etcd.username/password); a wrong password is a clear start error', async () => {
    const authed = await startEtcdCluster(1);
    try {
      authed.ctl(['user', 'add', 'root:rootpw']);
      authed.ctl(['auth', 'enable']);
      const key = generateEchKey({ publicName: 'cover.example', configId: 33 });
      const keys = join(dir, 'auth-keys');
      await mkdir(keys);
      await writeEchKeyFile(join(keys, 'k.pem'), key.config, key.privateKeyRaw);
      const config: FleetConfig = { ...fleetCfg('/auth', 'fe-a'), etcd: { endpoints: authed.endpoints, username: 'root', password: 'rootpw' } };
      const m = new FleetMember({ config, kek, importDirectory: keys });
      members.push(m);
      await m.start(15_000);
      expect(m.keySet.get(33)).toBeDefined();
      await m.close();
      const wrong = new FleetMember({ config: { ...config, etcd: { ...config.etcd, password: 'nope' } }, kek });
      members.push(wrong);
      await expect(wrong.start(2000)).rejects.toThrow(/etcd at http:\/\/127\.0\.0\.1:\d+: .*(auth|password)/i);
    } finally {
      await authed.stop();
    }
  }, 40_000);
});
