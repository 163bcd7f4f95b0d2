// Keyless mode in one process: the key server and its client over loopback
// mutually authenticated TLS. Decap and sign give what local keys give;
// foreign client certificates, keys outside a client's policy, non-CV data
// and rate limits are refused; an unreachable or silent key server fails
// within the deadline; a second key server takes over; the protocol codec
// rejects truncations.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { ServerCertificate, certificateVerifyInput, verifyWithScheme } from '../src/tls13/certificates.js';
import { SignatureScheme } from '../src/tls/constants.js';
import { KeyServer, type KeylessClientPolicy } from '../src/keyless/server.js';
import { KeylessClient, KeylessError } from '../src/keyless/client.js';
import { formatPublicEchFile, loadKeylessEchKeyDirectory } from '../src/keyless/files.js';
import {
  FrameDecoder,
  KeylessOp,
  KeylessStatus,
  decodeRequest,
  decodeResponse,
  echKeyId,
  encodeRequest,
  encodeResponse,
  isCertificateVerifyInput,
  tlsKeyId,
} from '../src/keyless/protocol.js';
import { validateServeConfig } from '../src/front/config.js';
import { validateKeyServerConfig } from '../src/keyless/keyserver-config.js';
import { makePki, type TestPki } from './tls13-helpers.js';

let pki: TestPki;
let other: TestPki;
let ks: { cert: string; key: string };
let edge: { cert: string; key: string };
let intruder: { cert: string; key: string };
let stranger: { cert: string; key: string };
let alpha: { cert: string; key: string };
let beta: { cert: string; key: string };
const echA = generateEchKey({ publicName: 'cover.example', configId: 1 });
const echB = generateEchKey({ publicName: 'other.example', configId: 2 });
const audit: Record<string, unknown>[] = [];
const servers: KeyServer[] = [];
const clients: KeylessClient[] = [];

const policies: KeylessClientPolicy[] = [
  { name: 'edge.test', ech: ['cover.example'], tls: ['alpha.example'] },
  { name: 'slow.test', ech: ['*'], ratePerSecond: 1, burst: 2 },
];

async function keyServer(extra: Partial<ConstructorParameters<typeof KeyServer>[0]> = {}): Promise<{ server: KeyServer; port: number }> {
  const server = new KeyServer({
    cert: ks.cert,
    key: ks.key,
    ca: pki.caPem,
    echKeys: new EchKeySet([echA, echB]),
    tlsKeys: [ServerCertificate.from(alpha), ServerCertificate.from(beta)],
    clients: policies,
    audit: (e) => audit.push(e),
    ...extra,
  });
  servers.push(server);
  const { port } = await server.listen(0);
  return { server, port };
}

function client(ports: number[], who = edge, timeoutMs = 800): KeylessClient {
  const c = new KeylessClient({
    servers: ports.map((port) => ({ host: '127.0.0.1', port, serverName: 'keyserver.test' })),
    cert: who.cert,
    key: who.key,
    ca: pki.caPem,
    timeoutMs,
    reconnectMinMs: 20,
    reconnectMaxMs: 100,
  });
  clients.push(c);
  return c;
}

const cvInput = () => certificateVerifyInput(true, createHash('sha256').update(String(Math.random())).digest());

beforeAll(() => {
  pki = makePki();
  other = makePki();
  ks = pki.leaf('ec', ['keyserver.test']);
  edge = pki.leaf('ec', ['edge.test']);
  stranger = pki.leaf('ec', ['stranger.test']);
  intruder = other.leaf('ec', ['edge.test']);
  alpha = pki.leaf('ec', ['alpha.example']);
  beta = pki.leaf('rsa', ['beta.example']);
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const s of servers) await s.close();
  pki?.cleanup();
  other?.cleanup();
});

describe('keyless protocol codec', () => {
  it('round-trips requests and responses, and every strict prefix of a frame stays pending', () => {
    const req = { op: KeylessOp.decap, id: 0xdeadbeef, keyId: new Uint8Array(32).fill(3), param: 0x20, payload: new Uint8Array(32).fill(9) };
    const frame = encodeRequest(req);
    const d = new FrameDecoder();
    for (let i = 0; i < frame.length - 1; i++) expect(new FrameDecoder().push(frame.subarray(0, i))).toEqual([]);
    const [body] = d.push(frame);
    expect(decodeRequest(body!)).toEqual(req);
    const res = { status: KeylessStatus.forbidden, id: 7, payload: new Uint8Array([1, 2]) };
    expect(decodeResponse(new FrameDecoder().push(encodeResponse(res))[0]!)).toEqual(res);
  });

  it('rejects truncated bodies, trailing bytes, another version and oversized frames', () => {
    const body = encodeRequest({ op: 1, id: 1, keyId: new Uint8Array(32), param: 0x20, payload: new Uint8Array(32) }).subarray(4);
    for (let i = 0; i < body.length; i++) expect(() => decodeRequest(body.subarray(0, i)), `prefix ${i}`).toThrow();
    expect(() => decodeRequest(new Uint8Array([...body, 0]))).toThrow();
    expect(() => decodeRequest(new Uint8Array([2, ...body.subarray(1)]))).toThrow(/version 2/);
    expect(() => new FrameDecoder().push(new Uint8Array([0, 1, 0, 0]))).toThrow(/exceeds/);
  });

  it('recognises only TLS 1.3 server CertificateVerify inputs', () => {
    expect(isCertificateVerifyInput(cvInput())).toBe(true);
    expect(isCertificateVerifyInput(certificateVerifyInput(false, new Uint8Array(32)))).toBe(false);
    expect(isCertificateVerifyInput(certificateVerifyInput(true, new Uint8Array(20)))).toBe(false);
    expect(isCertificateVerifyInput(new Uint8Array(130))).toBe(false);
  });
});

describe('key server and client', () => {
  it('decap returns the same shared secret as the local key, and sign verifies under the certificate', async () => {
    const { port } = await keyServer();
    const c = client([port]);
    await c.ready(3000);
    const enc = (await import('../src/crypto/kem.js')).kemEncap(echA.config.kemId, echA.config.publicKey).enc;
    const remote = c.echPrivateKey(echA.config);
    expect(Buffer.from(await remote.decap(enc))).toEqual(Buffer.from(echA.privateKey.decap(enc) as Uint8Array));
    const data = cvInput();
    const sig = await c.signer(alpha.cert)(SignatureScheme.ecdsa_secp256r1_sha256, data);
    expect(() => verifyWithScheme(SignatureScheme.ecdsa_secp256r1_sha256, new X509Certificate(alpha.cert).publicKey, data, sig)).not.toThrow();
    const ops = audit.filter((e) => e.client === 'edge.test' && e.result === 'ok');
    expect(ops.map((e) => e.op)).toEqual(expect.arrayContaining(['decap', 'sign']));
    expect(ops.find((e) => e.op === 'sign')).toMatchObject({ key: 'tls:alpha.example', keyId: Buffer.from(tlsKeyId(new X509Certificate(alpha.cert).publicKey)).toString('hex'), scheme: '0x0403' });
    expect(typeof ops[0]!.durationMs).toBe('number');
    // No secret in the audit log: neither the enc, the shared secret nor the signed data.
    const text = JSON.stringify(audit);
    expect(text).not.toContain(Buffer.from(enc).toString('hex'));
    expect(text).not.toContain(Buffer.from(sig).toString('hex'));
  });

  it('decap with post-quantum ECH keys (ML-KEM-768, X-Wing): 1088/1120-byte enc through the key server', async () => {
    const pq = [generateEchKey({ publicName: 'cover.example', configId: 41, kem: 'ml-kem-768' }), generateEchKey({ publicName: 'cover.example', configId: 42, kem: 'x-wing' })];
    const { port } = await keyServer({ echKeys: new EchKeySet([echA, ...pq]) });
    const c = client([port]);
    await c.ready(3000);
    const { kemEncap } = await import('../src/crypto/kem.js');
    for (const k of pq) {
      const { enc, sharedSecret } = kemEncap(k.config.kemId, k.config.publicKey);
      expect(enc.length).toBe(k.config.kemId === 0x0041 ? 1088 : 1120);
      expect(Buffer.from(await c.echPrivateKey(k.config).decap(enc))).toEqual(Buffer.from(sharedSecret));
    }
  });

  it('pipelines many operations over the pool', async () => {
    const { port } = await keyServer();
    const c = client([port]);
    await c.ready(3000);
    const sign = c.signer(alpha.cert);
    const sigs = await Promise.all(Array.from({ length: 50 }, () => sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput())));
    expect(sigs.every((s) => s.length > 60)).toBe(true);
  });

  it('refuses a key outside the client policy, an unknown key, and data that is not a CertificateVerify input', async () => {
    const { port } = await keyServer();
    const c = client([port]);
    await c.ready(3000);
    const enc = (await import('../src/crypto/kem.js')).kemEncap(echB.config.kemId, echB.config.publicKey).enc;
    await expect(c.echPrivateKey(echB.config).decap(enc)).rejects.toMatchObject({ code: 'ERR_KEYLESS_REFUSED', status: 'forbidden', alert: 'internal_error' });
    await expect(c.signer(beta.cert)(SignatureScheme.rsa_pss_rsae_sha256, cvInput())).rejects.toMatchObject({ status: 'forbidden' });
    const unknown = generateEchKey({ publicName: 'cover.example' });
    await expect(c.echPrivateKey(unknown.config).decap(enc)).rejects.toMatchObject({ status: 'unknown-key' });
    const keyId = tlsKeyId(new X509Certificate(alpha.cert).publicKey);
    await expect(c.sign(keyId, SignatureScheme.ecdsa_secp256r1_sha256, new Uint8Array(100))).rejects.toMatchObject({ status: 'bad-request' });
    await expect(c.sign(keyId, SignatureScheme.ed25519, cvInput())).rejects.toMatchObject({ status: 'bad-request' });
    expect(audit.some((e) => e.client === 'edge.test' && e.result === 'forbidden' && e.key === 'ech:2 other.example')).toBe(true);
  });

  it('a bad enc is a decryption failure (decrypt_error), not an outage', async () => {
    const { port } = await keyServer();
    const c = client([port]);
    await c.ready(3000);
    await expect(c.echPrivateKey(echA.config).decap(new Uint8Array(32))).rejects.toMatchObject({ code: 'ERR_DECRYPT' });
  });

  it('refuses a client certificate from another CA at the TLS layer', async () => {
    const { port } = await keyServer();
    const c = client([port], intruder, 500);
    await expect(c.ready(1500)).rejects.toMatchObject({ code: 'ERR_KEYLESS_UNAVAILABLE' });
    await expect(c.ping()).rejects.toBeInstanceOf(KeylessError);
  });

  it('a certificate from the CA without a policy gets forbidden for everything', async () => {
    const { port } = await keyServer();
    const c = client([port], stranger);
    await c.ready(3000);
    await expect(c.ping()).rejects.toMatchObject({ status: 'forbidden' });
  });

  it('update() revokes a client from its next request, on open connections', async () => {
    const { server, port } = await keyServer();
    const c = client([port]);
    await c.ready(3000);
    const sign = c.signer(alpha.cert);
    await sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput());
    server.update({ tlsKeys: [ServerCertificate.from(alpha)], clients: [{ name: 'someone-else.test', tls: ['*'] }] });
    await expect(sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput())).rejects.toMatchObject({ code: 'ERR_KEYLESS_REFUSED', status: 'forbidden' });
    server.update({ tlsKeys: [ServerCertificate.from(alpha)], clients: policies });
    await sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput());
  });

  it('keepalive pings hold idle connections open through the key server idle timeout', async () => {
    const { port } = await keyServer({ idleTimeoutMs: 150 });
    const events: Record<string, unknown>[] = [];
    const c = new KeylessClient({
      servers: [{ host: '127.0.0.1', port, serverName: 'keyserver.test' }],
      cert: edge.cert,
      key: edge.key,
      ca: pki.caPem,
      keepaliveMs: 50,
      log: (e) => events.push(e),
    });
    clients.push(c);
    await c.ready(3000);
    await new Promise((r) => setTimeout(r, 600));
    expect(events.filter((e) => e.event === 'keyless_server_down')).toEqual([]);
    expect(c.status()[0]).toMatchObject({ up: true, connections: 2 });
  });

  it('rate-limits per client', async () => {
    const slow = pki.leaf('ec', ['slow.test']);
    const { port } = await keyServer();
    const c = client([port], slow);
    await c.ready(3000);
    const enc = (await import('../src/crypto/kem.js')).kemEncap(echA.config.kemId, echA.config.publicKey).enc;
    const key = c.echPrivateKey(echA.config);
    const results = await Promise.allSettled(Array.from({ length: 5 }, () => key.decap(enc)));
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(2);
    expect(results.filter((r) => r.status === 'rejected').every((r) => (r as PromiseRejectedResult).reason.status === 'rate-limited')).toBe(true);
  });

  it('fails fast when no key server is reachable, and within the deadline when one does not answer', async () => {
    // Nothing listens on a port we just closed.
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    const dead = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const c = client([dead], edge, 600);
    await new Promise((r) => setTimeout(r, 100));
    let t0 = Date.now();
    await expect(c.ping()).rejects.toMatchObject({ code: 'ERR_KEYLESS_UNAVAILABLE', alert: 'internal_error' });
    expect(Date.now() - t0).toBeLessThan(700);
    // A TCP server that accepts and never speaks TLS.
    const silentServer = net.createServer(() => undefined);
    await new Promise<void>((r) => silentServer.listen(0, '127.0.0.1', r));
    const c2 = client([(silentServer.address() as net.AddressInfo).port], edge, 400);
    t0 = Date.now();
    await expect(c2.ping()).rejects.toMatchObject({ code: 'ERR_KEYLESS_UNAVAILABLE' });
    expect(Date.now() - t0).toBeLessThan(1000);
    c2.close();
    silentServer.close();
  });

  it('fails over to the second key server and comes back when the first returns', async () => {
    const a = await keyServer();
    const b = await keyServer();
    const c = client([a.port, b.port]);
    await c.ready(3000);
    await c.ping();
    await a.server.close();
    const sign = c.signer(alpha.cert);
    for (let i = 0; i < 5; i++) await sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput());
    expect(c.status()[0]!.up).toBe(false);
    // The first key server comes back on its port.
    const again = new KeyServer({ cert: ks.cert, key: ks.key, ca: pki.caPem, tlsKeys: [ServerCertificate.from(alpha)], clients: policies });
    servers.push(again);
    await again.listen(a.port);
    for (let i = 0; i < 100 && !c.status()[0]!.up; i++) await new Promise((r) => setTimeout(r, 20));
    expect(c.status()[0]!.up).toBe(true);
    await b.server.close();
    await sign(SignatureScheme.ecdsa_secp256r1_sha256, cvInput());
  }, 15_000);
});

describe('keyless configuration', () => {
  it('serve: the keyless section lets certificates come without keys; errors name their field', () => {
    const base = {
      listen: '127.0.0.1:0',
      keys: 'keys',
      publicName: { cert: 'cover.pem' },
      routes: [{ serverName: 'alpha.example', cert: 'alpha.pem', respond: 'ech-status' }],
      keyless: { servers: ['127.0.0.1:7443'], cert: 'edge.pem', key: 'edge.key', ca: 'ca.pem', timeoutMs: 500 },
    };
    const c = validateServeConfig(base, '/etc/ech');
    expect(c.keyless).toMatchObject({ servers: [{ host: '127.0.0.1', port: 7443 }], cert: '/etc/ech/edge.pem', timeoutMs: 500 });
    expect(c.publicName.key).toBeUndefined();
    const bad: Array<[unknown, RegExp]> = [
      [{ ...base, keyless: undefined }, /publicName\.key: is required/],
      [{ ...base, keyless: { ...base.keyless, servers: [] } }, /keyless\.servers: must be a non-empty list/],
      [{ ...base, keyless: { ...base.keyless, servers: ['x'] } }, /keyless\.servers\[0\]: 'x' is not "host:port"/],
      [{ ...base, keyless: { ...base.keyless, ca: undefined } }, /keyless\.ca: is required/],
      [{ ...base, keyless: { ...base.keyless, timeoutMs: -1 } }, /keyless\.timeoutMs: must be a positive whole number/],
      [{ ...base, keyless: { ...base.keyless, bogus: 1 } }, /keyless\.bogus: is not a known field/],
    ];
    for (const [raw, re] of bad) expect(() => validateServeConfig(raw, '/etc/ech')).toThrow(re);
  });

  it('key server: errors name their field', () => {
    const base = { listen: '127.0.0.1:7443', cert: 'ks.pem', key: 'ks.key', ca: 'ca.pem', echKeys: 'keys', clients: [{ name: 'edge.test', ech: ['*'] }] };
    expect(validateKeyServerConfig(base, '/k').clients[0]).toEqual({ name: 'edge.test', ech: ['*'] });
    const bad: Array<[unknown, RegExp]> = [
      [{ ...base, clients: [] }, /clients: must be a non-empty list/],
      [{ ...base, clients: [{ name: 'a', ech: [300] }] }, /clients\[0\]\.ech\[0\]: must be a config_id/],
      [{ ...base, clients: [{ name: 'a', keyIds: ['zz'] }] }, /clients\[0\]\.keyIds\[0\]/],
      [{ ...base, clients: [{ name: 'a' }, { name: 'A' }] }, /clients\[1\]\.name: duplicates/],
      [{ ...base, tlsKeys: [{ cert: 'x' }] }, /tlsKeys\[0\]\.key: is required/],
      [{ ...base, listen: 'nope' }, /listen: 'nope' is not "host:port"/],
    ];
    for (const [raw, re] of bad) expect(() => validateKeyServerConfig(raw, '/k')).toThrow(re);
  });

  it('an ECHCONFIG-only key directory loads as remote keys with the configs’ key ids', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'keyless-keys-'));
    try {
      await writeFile(join(dir, 'a.pem'), formatPublicEchFile([echA.config]));
      await writeFile(join(dir, 'b.retired.pem'), formatPublicEchFile([echB.config]));
      expect(await readFile(join(dir, 'a.pem'), 'utf8')).not.toContain('PRIVATE KEY');
      const seen: Uint8Array[] = [];
      const set = await loadKeylessEchKeyDirectory(dir, (config) => {
        seen.push(echKeyId(config.kemId, config.publicKey));
        return { kem: config.kemId, publicKey: config.publicKey, decap: () => new Uint8Array(32) };
      });
      expect(set.size).toBe(2);
      expect(set.retryConfigs().map((c) => c.configId)).toEqual([1]);
      expect(seen.length).toBe(2);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
