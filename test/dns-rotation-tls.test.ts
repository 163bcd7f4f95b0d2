// @module-tag peer-boringssl
// @module-tag peer-knot
// Rotation end to end with a real peer: the key manager publishes each key to
// Knot by RFC 2136 + TSIG and hot-swaps the key set of a running front end.
// A BoringSSL client takes its ECHConfigList from Knot's answer: accepted;
// after the old key's grace period, a client still holding the old config is
// rejected with retry_configs equal to the list DNS now serves, and succeeds
// on retry; a client with the new config is accepted.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EchKeyManager } from '../src/keys/manager.js';
import { Rfc2136Publisher } from '../src/dns/rfc2136.js';
import { tsigKey } from '../src/dns/tsig.js';
import { EchFrontEnd } from '../src/front/front-end.js';
import { toBase64 } from '../src/wire/bytes.js';
import { type TestDnsServer, kdig, startDnsServer } from './peers/dns-server.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { FakeClock } from './helpers/fake-clock.js';

let dns: TestDnsServer;
let dir: string;
let pki: TestPki;
let fe: EchFrontEnd;
let port: number;
let manager: EchKeyManager;
const clock = new FakeClock();

/** The ech= value Knot serves for the name. */
const published = () => /ech=(\S+)/.exec(kdig(dns, 'www.example.test', 'HTTPS'))?.[1];

beforeAll(async () => {
  await buildHarness();
  dns = await startDnsServer('knot', { zone: 'example.test', records: ['www 300 HTTPS 1 . alpn=http/1.1 ech=AAA='] });
  dir = await mkdtemp(join(tmpdir(), 'ech-rotation-tls-'));
  pki = makePki();
  const cover = pki.leaf('ec', ['cover.example.test']);
  const www = pki.leaf('ec', ['www.example.test']);
  manager = await EchKeyManager.open({
    keyDirectory: join(dir, 'keys'),
    stateFile: join(dir, 'state.json'),
    publicName: 'cover.example.test',
    names: ['www.example.test'],
    period: 3600,
    ttl: 300,
    margin: 600,
    publisher: new Rfc2136Publisher({ server: dns.address, zone: dns.zone, tsig: tsigKey(dns.updateKey.name, dns.updateKey.secret), timeoutMs: 2000 }),
    clock,
  });
  await manager.start();
  fe = new EchFrontEnd({
    keys: manager.keySet,
    publicName: { cert: cover.cert, key: cover.key },
    routes: [{ serverName: 'www.example.test', cert: www.cert, key: www.key, action: { respond: 'ech-status' } }],
  });
  // The hot swap: every new key set goes to the running front end.
  manager.on('keys', (keys) => fe.update({ keys }));
  port = (await fe.listen(0)).port;
}, 60_000);

afterAll(async () => {
  await manager?.stop();
  await fe?.close();
  await dns?.stop();
  pki?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const GET = 'GET / HTTP/1.1\r\nHost: www.example.test\r\nAccept: application/json\r\nConnection: close\r\n\r\n';
const client = (echConfigList: string, retry = false) =>
  runClient({ port, sni: 'www.example.test', echConfigList, ca: join(pki.dir, 'ca.pem'), retry, send: GET, read: true });

describe('rotation with Knot and a BoringSSL client', () => {
  let oldList: string;

  it('a client with the config DNS serves is accepted', async () => {
    oldList = published()!;
    expect(oldList).toBe(toBase64(manager.keySet.retryConfigList()!));
    const r = await client(oldList);
    expect(r.error).toBeNull();
    expect(r.echAccepted).toBe(true);
  });

  it('after rotation and the grace period, the old config gets retry_configs equal to the new DNS list and succeeds on retry', async () => {
    await clock.advance(3600 * 1000, manager); // rotate: new key published, old withdrawn
    const newList = published()!;
    expect(newList).not.toBe(oldList);
    // within the grace period the old key still decrypts
    expect((await client(oldList)).echAccepted).toBe(true);
    await clock.advance(900 * 1000, manager); // past ttl + margin: old key deleted
    const r = await client(oldList, true);
    expect(r.first!.echRejected).toBe(true);
    expect(r.firstRetryConfigs).toBe(newList);
    expect(r.retried).toBe(true);
    expect(r.echAccepted).toBe(true);
    expect(r.response).toMatch(/"echStatus":"accepted"/);
    // the deleted key's config_id is unknown to the server now: counted as
    // grease (no key matched), and the client's ech_required alert is counted
    expect(fe.metrics.value('connections', { status: 'grease' })).toBe(1);
    // the alert arrives after the handshake: poll, bounded
    for (let i = 0; i < 100 && fe.metrics.value('echRequired') === 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(fe.metrics.value('echRequired')).toBe(1);
  });

  it('a client with the new config is accepted', async () => {
    const r = await client(published()!);
    expect(r.echAccepted).toBe(true);
  });
});
