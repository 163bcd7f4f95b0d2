// @module-tag peer-chromium
// @module-tag peer-netns
// @module-tag peer-certutil
// Real peer, whole path: headless Chromium (Debian `chromium`) loads inner
// sites through our ECH front end (EchFrontEnd, shared mode: our TLS 1.3
// engine terminates), inside a private network namespace where our DNS
// responder publishes the HTTPS records made by src/dns (https-record.ts).
//
//   cover.test  public name (certificate for it; ECH configs name it)
//   alpha.test  inner site a: the built-in ech-status responder
//   beta.test   inner site b: `/` answers 302 → `/again` with
//               `Connection: close`, everything else is the ech-status
//               responder. The redirect forces a second connection in the
//               same browser session: that is how resumption is tested.
//   plain.test  A record only (no HTTPS record): Chromium sends GREASE ECH.
//
// Chromium runs with NO_PRECONNECT_PREFERENCES: by default it preconnects a
// second socket for each navigation, so one page load would be two
// handshakes at once (two rejections on rotation, and the redirect would
// reuse a socket that did a full handshake before any ticket arrived).
//
// Every connection the namespace listeners accept is teed before it is
// handed to the front end (`fe.server.emit('connection', socket)`): the bytes
// the client sent are kept, so each test checks what was on the wire.
//
// Needs root, chromium, iproute2, libnss3-tools
// (docs/testing-with-chromium.md). Missing any of them is a failure, never a skip.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import http from 'node:http';
import type { Server, Socket } from 'node:net';
import { EchFrontEnd, type FrontEndOptions, type TerminatedSocket } from '../../src/front/front-end.js';
import { echStatusHandler } from '../../src/front/ech-status.js';
import { ExtensionType } from '../../src/tls/constants.js';
import { findExtension } from '../../src/tls/client-hello.js';
import { readFirstHandshakeMessage } from '../../src/tls/record.js';
import { decryptClientHello, type DecryptResult } from '../../src/ech/decrypt.js';
import { generateEchKey } from '../../src/keys/generate.js';
import { EchKeySet } from '../../src/keys/key-set.js';
import { assertRoot, createNetns, type Netns } from '../peers/netns.js';
import { DnsResponder, buildZone } from '../peers/dns-responder.js';
import { NO_PRECONNECT_PREFERENCES, chromiumBinary, parseNetLog, runChromium, type ChromiumResult } from '../peers/chromium.js';
import { makePki, type TestPki } from '../tls13-helpers.js';

const PUBLIC_NAME = 'cover.test';
const SITE_A = 'alpha.test';
const SITE_B = 'beta.test';
const PLAIN_NAME = 'plain.test';
const ALT_PORT = 8443;

let ns: Netns | undefined;
let dns: DnsResponder | undefined;
let pki: TestPki | undefined;
/** The key set whose ECHConfigList DNS serves, for the whole file. */
let keys: EchKeySet;
let echConfigList: Uint8Array;
let baseOptions: FrontEndOptions;
/** The front end the namespace listeners feed now (tests may swap it). */
let fe: EchFrontEnd;
const frontEnds: EchFrontEnd[] = [];
const betaApp = http.createServer((req, res) => {
  if (req.url === '/') {
    res.writeHead(302, { location: '/again', connection: 'close', 'content-length': 0, 'cache-control': 'no-store' });
    res.end();
    return;
  }
  echStatusHandler(SITE_B)(req, res);
});
betaApp.on('clientError', (_e, s) => s.destroy());

/** One TCP connection as the client sent it (bytes teed before the front end read them). */
interface Wire {
  port: number;
  /** Client → server bytes, first 256 KiB. */
  bytes: Buffer;
  closed: boolean;
}
const wires: Wire[] = [];

function tee(socket: Socket): void {
  const w: Wire = { port: socket.localPort ?? 0, bytes: Buffer.alloc(0), closed: false };
  wires.push(w);
  socket.on('data', (d: Buffer) => {
    if (w.bytes.length < 256 * 1024) w.bytes = Buffer.concat([w.bytes, d]);
  });
  socket.once('close', () => (w.closed = true));
}

function newFrontEnd(opts: Partial<FrontEndOptions> = {}): EchFrontEnd {
  const f = new EchFrontEnd({ ...baseOptions, ...opts });
  frontEnds.push(f);
  return f;
}

beforeAll(async () => {
  assertRoot('the Chromium ECH page-load tests');
  chromiumBinary(); // throws with the apt-get line when missing
  ns = await createNetns();
  const [udp53, tcp53, tcp443, tcpAlt] = await ns.bind([
    { proto: 'udp', port: 53 },
    { proto: 'tcp', port: 53 },
    { proto: 'tcp', port: 443 },
    { proto: 'tcp', port: ALT_PORT },
  ] as const);
  pki = makePki();
  const cover = pki.leaf('ec', [PUBLIC_NAME]);
  const a = pki.leaf('ec', [SITE_A]);
  const b = pki.leaf('ec', [SITE_B]);
  const plain = pki.leaf('ec', [PLAIN_NAME]);

  const key = generateEchKey({ publicName: PUBLIC_NAME });
  keys = new EchKeySet([key]);
  echConfigList = keys.retryConfigList()!;
  dns = new DnsResponder(
    buildZone([
      {
        name: SITE_A,
        address: ns.address,
        https: [
          { port: 443, alpn: ['http/1.1'], echConfigList },
          { port: ALT_PORT, alpn: ['http/1.1'], echConfigList }, // _8443._https.alpha.test, TargetName alpha.test.
        ],
      },
      { name: SITE_B, address: ns.address, https: [{ port: 443, alpn: ['http/1.1'], echConfigList }] },
      { name: PUBLIC_NAME, address: ns.address },
      { name: PLAIN_NAME, address: ns.address },
    ]),
  )
    .serveUdp(udp53)
    .serveTcp(tcp53);

  baseOptions = {
    keys,
    publicName: { cert: cover.cert, key: cover.key },
    routes: [
      { serverName: SITE_A, cert: a.cert, key: a.key, action: { respond: 'ech-status' } },
      { serverName: SITE_B, cert: b.cert, key: b.key, action: { handler: (s: TerminatedSocket) => betaApp.emit('connection', s) } },
      { serverName: PLAIN_NAME, cert: plain.cert, key: plain.key, action: { respond: 'ech-status' } },
    ],
    ALPNProtocols: ['http/1.1'],
  };
  fe = newFrontEnd();
  for (const l of [tcp443, tcpAlt] as Server[]) {
    l.on('connection', (socket: Socket) => {
      tee(socket);
      fe.server.emit('connection', socket);
    });
  }
}, 60_000);

afterAll(async () => {
  betaApp.closeAllConnections();
  for (const f of frontEnds) await f.close();
  dns?.close();
  await ns?.destroy();
  pki?.cleanup();
}, 30_000);

/** The ech-status page's `<table id="report">` as a record (from --dump-dom output). */
function report(dom: string): Record<string, string> {
  const table = /<table id="report">([\s\S]*?)<\/table>/.exec(dom);
  if (!table) throw new Error(`no ech-status report in the page:\n${dom.slice(0, 2000)}`);
  const out: Record<string, string> = {};
  for (const m of table[1]!.matchAll(/<th>([^<]*)<\/th>\s*<td>([^<]*)<\/td>/g)) out[m[1]!] = m[2]!;
  return out;
}

/** The page's <h1>: the site whose responder answered. */
function site(dom: string): string | undefined {
  return /<h1>([^<]*)<\/h1>/.exec(dom)?.[1];
}

async function load(url: string, extra: { netLog?: boolean } = {}): Promise<ChromiumResult> {
  const r = await runChromium({ netns: ns!, url, trustCaPem: pki!.caPem, timeoutMs: 30_000, netLog: extra.netLog, preferences: NO_PRECONNECT_PREFERENCES });
  expect(r.timedOut, `Chromium timed out loading ${url}:\n${r.stderr.slice(-2000)}`).toBe(false);
  return r;
}

/** The first ClientHello of a teed connection, and what our core makes of it with `k`. */
async function firstHello(w: Wire, k: EchKeySet): Promise<{ message: Uint8Array; wireLength: number; result: DecryptResult }> {
  const got = readFirstHandshakeMessage(w.bytes);
  if (!got) throw new Error(`connection on port ${w.port}: no whole ClientHello in ${w.bytes.length} bytes`);
  return { message: got.message.raw, wireLength: got.consumed, result: await decryptClientHello(got.message.raw, k) };
}

const has = (b: Buffer, text: string) => b.includes(Buffer.from(text, 'ascii'));

describe('Chromium loads inner sites through the ECH front end', { timeout: 60_000 }, () => {
  for (const port of [443, ALT_PORT]) {
    const url = port === 443 ? `https://${SITE_A}/` : `https://${SITE_A}:${port}/`;
    it(`${url}: route a answers, ech-status says accepted, the wire only shows ${PUBLIC_NAME}`, async () => {
      const before = wires.length;
      const accepted0 = fe.metrics.value('connections', { status: 'accepted' });
      const r = await load(url);
      expect(site(r.stdout), r.stdout.slice(0, 1000)).toBe(SITE_A);
      const rep = report(r.stdout);
      expect(rep['echStatus']).toBe('accepted');
      expect(rep['innerServerName']).toBe(SITE_A);
      expect(rep['outerServerName']).toBe(PUBLIC_NAME);
      expect(rep['servername']).toBe(SITE_A);
      // Chromium offers X25519MLKEM768 first; the front end's default groups take it.
      expect(rep['group']).toBe('X25519MLKEM768');
      expect(rep['configId']).toBe(String(keys.retryConfigs()[0]!.configId));
      expect(fe.metrics.value('connections', { status: 'accepted' })).toBeGreaterThan(accepted0);

      // What was on the wire: every connection Chromium opened for this load.
      const mine = wires.slice(before).filter((w) => w.port === port);
      expect(mine.length).toBeGreaterThan(0);
      for (const w of mine) {
        const { result, wireLength } = await firstHello(w, keys);
        expect(result.status).toBe('accepted');
        expect(result.outerServerName).toBe(PUBLIC_NAME);
        if (result.status === 'accepted') expect(result.innerServerName).toBe(SITE_A);
        expect(has(w.bytes.subarray(0, wireLength), PUBLIC_NAME)).toBe(true);
        // Not in the first flight, and not anywhere else the client sent.
        expect(has(w.bytes, SITE_A)).toBe(false);
      }
      // Chromium asked for the record we serve.
      const owner = port === 443 ? SITE_A : `_${port}._https.${SITE_A}`;
      expect((await dns!.waitForQuery((e) => e.name === owner && e.type === 'HTTPS')).answers).toBe(1);
    });
  }

  it(`routes by the inner name: https://${SITE_B}/ (redirected to /again) is route b, behind the same cover name`, async () => {
    const before = wires.length;
    const r = await load(`https://${SITE_B}/`);
    expect(site(r.stdout)).toBe(SITE_B);
    const rep = report(r.stdout);
    expect(rep['echStatus']).toBe('accepted');
    expect(rep['innerServerName']).toBe(SITE_B);
    expect(rep['outerServerName']).toBe(PUBLIC_NAME);
    for (const w of wires.slice(before)) expect(has(w.bytes, SITE_B)).toBe(false);
  });

  it(`no HTTPS record (${PLAIN_NAME}): Chromium sends GREASE ECH, the page loads with status grease`, async () => {
    const before = wires.length;
    const counts0 = { grease: fe.metrics.value('connections', { status: 'grease' }), rejected: fe.metrics.value('connections', { status: 'rejected' }) };
    const r = await load(`https://${PLAIN_NAME}/`);
    expect(site(r.stdout)).toBe(PLAIN_NAME);
    const rep = report(r.stdout);
    expect(rep['outerServerName']).toBe(PLAIN_NAME);
    expect(rep['innerServerName']).toBe('-');
    // Chromium's GREASE ECH has a random config_id. It can collide with ours
    // (1 in 256): the payload then fails to open and the status is
    // "rejected". Read the wire to know which, rather than trust luck.
    const w = wires.slice(before).find((x) => x.port === 443)!;
    const { result } = await firstHello(w, keys);
    expect(result.status).toBe('rejected');
    expect(result.outerServerName).toBe(PLAIN_NAME);
    expect(findExtension(result.outer.extensions, ExtensionType.encrypted_client_hello), 'GREASE ECH extension in the outer hello').toBeDefined();
    const expected = result.status === 'rejected' && result.reason === 'no-matching-config' ? 'grease' : 'rejected';
    expect(rep['echStatus']).toBe(expected);
    expect(fe.metrics.value('connections', { status: expected })).toBe(counts0[expected] + 1);
    expect((await dns!.waitForQuery((e) => e.name === PLAIN_NAME && e.type === 'HTTPS')).answers).toBe(0);
  });

  it('resumption through ECH: the second connection of one navigation (302 + Connection: close) resumes, ECH accepted', async () => {
    const before = wires.length;
    const r = await load(`https://${SITE_B}/`, { netLog: true });
    expect(site(r.stdout)).toBe(SITE_B);
    const rep = report(r.stdout);
    expect(rep['echStatus']).toBe('accepted');
    expect(rep['innerServerName']).toBe(SITE_B);
    expect(rep['resumed']).toBe('true');
    // Two connections: the first full handshake (no PSK), the second with
    // the PSK inside the encrypted inner hello.
    const mine = wires.slice(before).filter((w) => w.port === 443);
    expect(mine.length).toBeGreaterThanOrEqual(2);
    const first = await firstHello(mine[0]!, keys);
    const second = await firstHello(mine[1]!, keys);
    expect(first.result.status).toBe('accepted');
    expect(second.result.status).toBe('accepted');
    if (first.result.status !== 'accepted' || second.result.status !== 'accepted') return;
    expect(findExtension(first.result.inner.extensions, ExtensionType.pre_shared_key)).toBeUndefined();
    const innerPsk = findExtension(second.result.inner.extensions, ExtensionType.pre_shared_key);
    expect(innerPsk).toBeDefined();
    // The real PSK identity is only inside: an outer pre_shared_key, if any,
    // is GREASE (RFC 9849 §6.1.2), never a copy of the inner one.
    const outerPsk = findExtension(second.result.outer.extensions, ExtensionType.pre_shared_key);
    if (outerPsk) expect(Buffer.from(outerPsk.data).equals(Buffer.from(innerPsk!.data))).toBe(false);
    for (const w of mine) expect(has(w.bytes, SITE_B)).toBe(false);
    // Chromium's own account of its two handshakes.
    const ends = parseNetLog(r.netLog!)
      .events.filter((e) => e.type === 'SSL_CONNECT' && e.phase === 'PHASE_END' && 'encrypted_client_hello' in e.params)
      .map((e) => ({ ech: e.params['encrypted_client_hello'], resumed: e.params['is_resumed'] }));
    expect(ends).toEqual([
      { ech: true, resumed: false },
      { ech: true, resumed: true },
    ]);
  });
});

describe('key rotation while DNS still serves the old ECHConfigList', { timeout: 60_000 }, () => {
  async function rotateAndLoad(newKeys: EchKeySet): Promise<{ r: ChromiumResult; f: EchFrontEnd; before: number }> {
    const f = newFrontEnd();
    fe = f;
    f.update({ keys: newKeys }); // DNS keeps serving `echConfigList` (the old key)
    const before = wires.length;
    const r = await load(`https://${SITE_A}/`, { netLog: true });
    return { r, f, before };
  }

  async function checkRecovered(r: ChromiumResult, f: EchFrontEnd, newKeys: EchKeySet, before: number): Promise<void> {
    expect(site(r.stdout), r.stdout.slice(0, 1000)).toBe(SITE_A);
    const rep = report(r.stdout);
    expect(rep['echStatus']).toBe('accepted');
    expect(rep['innerServerName']).toBe(SITE_A);
    expect(rep['configId']).toBe(String(newKeys.retryConfigs()[0]!.configId));
    expect(f.metrics.value('connections', { status: 'accepted' })).toBe(1);
    // The client's ech_required alert arrives after our handshake: bounded poll.
    for (let i = 0; i < 100 && f.metrics.value('echRequired') === 0; i++) await new Promise((res) => setTimeout(res, 20));
    expect(f.metrics.value('echRequired')).toBe(1);
    // On the wire: first the old config (public name only), then the new one.
    const mine = wires.slice(before).filter((w) => w.port === 443);
    expect(mine.length).toBe(2);
    const oldTry = await firstHello(mine[0]!, keys);
    expect(oldTry.result.status).toBe('accepted'); // the old key opens it: it used the DNS config
    const retry = await firstHello(mine[1]!, newKeys);
    expect(retry.result.status).toBe('accepted');
    expect(retry.result.outerServerName).toBe(PUBLIC_NAME);
    for (const w of mine) expect(has(w.bytes, SITE_A)).toBe(false);
    // Chromium's account: ECH with the DNS config, then with the retry config.
    const log = parseNetLog(r.netLog!);
    const lists = log.events
      .filter((e) => e.type === 'SSL_CONNECT_JOB_SSL_CONNECT' && e.params['ech_enabled'] === true)
      .map((e) => e.params['ech_config_list']);
    const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');
    expect(lists).toEqual([b64(echConfigList), b64(newKeys.retryConfigList()!)]);
    // It finished the handshake for the public name, then sent a fatal
    // ech_required alert (2, 121), failed with ERR_ECH_NOT_NEGOTIATED and
    // restarted with our retry_configs.
    expect(log.events.filter((e) => e.type === 'SSL_ALERT_SENT').map((e) => e.params['bytes'])).toContain(b64(new Uint8Array([2, 121])));
    expect(log.netErrors()).toContain('ERR_ECH_NOT_NEGOTIATED');
    const restart = log.events.filter((e) => e.type === 'SSL_CONNECT_JOB_RESTART_WITH_ECH_CONFIG_LIST');
    expect(restart.map((e) => e.params['bytes'])).toEqual([b64(newKeys.retryConfigList()!)]);
  }

  it('same config_id, new key (decryption fails): one rejection with retry_configs, then one acceptance', async () => {
    const oldId = keys.retryConfigs()[0]!.configId;
    const newKeys = new EchKeySet([generateEchKey({ publicName: PUBLIC_NAME, configId: oldId })]);
    const { r, f, before } = await rotateAndLoad(newKeys);
    await checkRecovered(r, f, newKeys, before);
    expect(f.metrics.value('connections', { status: 'rejected' })).toBe(1);
    expect(f.metrics.value('connections', { status: 'grease' })).toBe(0);
  });

  it('new config_id (the usual rotation): the stale config counts as grease (no key matches), then one acceptance', async () => {
    const oldId = keys.retryConfigs()[0]!.configId;
    const newKeys = new EchKeySet([generateEchKey({ publicName: PUBLIC_NAME, configId: (oldId + 1) % 256 })]);
    const { r, f, before } = await rotateAndLoad(newKeys);
    await checkRecovered(r, f, newKeys, before);
    // A server cannot tell an unknown config_id from GREASE (RFC 9849 §6.2).
    expect(f.metrics.value('connections', { status: 'grease' })).toBe(1);
    expect(f.metrics.value('connections', { status: 'rejected' })).toBe(0);
  });
});
