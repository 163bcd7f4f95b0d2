// Post-quantum ECH keys (draft-ietf-hpke-pq): ML-KEM-768 (0x0041) and X-Wing
// (0x647a) through keygen, the RFC 9934 PEM file, the decrypt core, our ECH
// client and server end to end; HPKE cross-checked against hpke-js
// (@hpke/ml-kem, @hpke/hybridkem-x-wing); BoringSSL, which has no PQ HPKE,
// given a list with PQ configs first still gets ECH with the X25519 one.
// (Debian's android-libboringssl is Android 13's: no X25519MLKEM768 or
// X25519Kyber768Draft00, only CECPQ2, so it cannot test the hybrid group.)
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { AeadId, CipherSuite, KdfId, KemId } from 'hpke-js';
import { MlKem768 } from '@hpke/ml-kem';
import { XWing } from '@hpke/hybridkem-x-wing';
import { generateEchKey, KemName } from '../src/keys/generate.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { formatEchKeyFile, loadEchKeyDirectory, parseEchKeyFile, writeEchKeyFile } from '../src/keys/files.js';
import { parseEchPem } from '../src/keys/pem.js';
import { decodeEchConfigList, encodeEchConfigList } from '../src/ech/config.js';
import { createRecipientContext, kemPrivateKeyFromPkcs8, loadKemPrivateKey, PqKemId, setupBaseRecipient, setupBaseSender } from '../src/crypto/hpke.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { connectEch } from '../src/tls13/ech-client.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import { buildHarness, runClient } from './peers/boringssl.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const enc = (s: string): Uint8Array => new TextEncoder().encode(s);
const PQ = [
  ['ml-kem-768', PqKemId.MlKem768, () => new MlKem768(), 1184, 1088],
  ['x-wing', PqKemId.XWing, () => new XWing(), 1216, 1120],
] as const;

let pki: TestPki;
let dir: string;
beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  dir = await mkdtemp(join(tmpdir(), 'ech-pq-'));
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

describe.each(PQ)('%s ECH keys', (name, kemId, hpkeJsKem, npk, nenc) => {
  it('keygen names it; the ECHConfig carries the KEM id and its public key', () => {
    expect(KemName[name]).toBe(kemId);
    const key = generateEchKey({ publicName: 'cover.example', kem: name });
    expect(key.config.kemId).toBe(kemId);
    expect(key.config.publicKey.length).toBe(npk);
    expect(key.privateKey.publicKey).toEqual(key.config.publicKey);
  });

  it('HPKE agrees with hpke-js both ways (their sender → our decrypt core, our sender → their recipient)', async () => {
    const key = generateEchKey({ publicName: 'cover.example', kem: name });
    const suite = { kem: kemId, kdf: 1, aead: 1 };
    const info = Buffer.concat([Buffer.from('tls ech\0', 'latin1'), key.config.raw]);
    const theirs = new CipherSuite({ kem: hpkeJsKem() as unknown as KemId, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm });
    const sender = await theirs.createSenderContext({ recipientPublicKey: await theirs.kem.deserializePublicKey(key.config.publicKey), info });
    expect(sender.enc.byteLength).toBe(nenc);
    const ct = await sender.seal(enc('inner hello'), enc('outer aad'));
    const loaded = loadKemPrivateKey(kemId, key.privateKeyRaw);
    const ctx = setupBaseRecipient(suite, loaded, new Uint8Array(sender.enc), info);
    expect(Buffer.from(ctx.open(enc('outer aad'), new Uint8Array(ct))).toString()).toBe('inner hello');
    // the async entry point takes the same path
    const ctx2 = await createRecipientContext(suite, { kem: kemId, privateKey: key.privateKeyRaw }, new Uint8Array(sender.enc), info);
    expect(Buffer.from(ctx2.open(enc('outer aad'), new Uint8Array(ct))).toString()).toBe('inner hello');

    const mine = setupBaseSender(suite, key.config.publicKey, info);
    const sealed = mine.seal(enc('aad'), enc('back'));
    const theirKey = await theirs.kem.deserializePrivateKey(key.privateKeyRaw);
    const r = await theirs.createRecipientContext({ recipientKey: theirKey, enc: mine.enc, info });
    expect(Buffer.from(await r.open(sealed, enc('aad'))).toString()).toBe('back');
  });

  it('a wrong-length enc or a tampered one is decrypt_error, not a crash', () => {
    const key = generateEchKey({ publicName: 'cover.example', kem: name });
    const suite = { kem: kemId, kdf: 1, aead: 1 };
    const s = setupBaseSender(suite, key.config.publicKey, enc('i'));
    const ct = s.seal(enc('a'), enc('p'));
    const loaded = loadKemPrivateKey(kemId, key.privateKeyRaw);
    expect(() => setupBaseRecipient(suite, loaded, s.enc.subarray(1), enc('i'))).toThrow(expect.objectContaining({ alert: 'decrypt_error' }));
    const bad = Uint8Array.from(s.enc);
    bad[5]! ^= 1; // ML-KEM implicit rejection: a different secret, so the AEAD fails
    expect(() => setupBaseRecipient(suite, loaded, bad, enc('i')).open(enc('a'), ct)).toThrow(expect.objectContaining({ alert: 'decrypt_error' }));
  });

  it('the RFC 9934 PEM file holds the seed as PKCS#8 and loads back (0600)', async () => {
    const key = generateEchKey({ publicName: 'cover.example', kem: name });
    const text = formatEchKeyFile(key.config, key.privateKeyRaw);
    const pem = parseEchPem(text);
    const der = Buffer.from(pem.privateKeyPkcs8!);
    if (name === 'ml-kem-768') {
      // draft-ietf-lamps-kyber-certificates seed form: id-alg-ml-kem-768, [0] 64-byte seed
      expect(der.length).toBe(86);
      expect(der.subarray(0, 22).toString('hex')).toBe('3054020100300b060960864801650304040204428040');
    } else {
      expect(der.length).toBe(54);
      expect(der.subarray(0, 22).toString('hex')).toBe('3034020100300d060b2b0601040183e62d81c87a0420');
    }
    expect(Buffer.from(der.subarray(der.length - key.privateKeyRaw.length)).equals(key.privateKeyRaw)).toBe(true);
    expect(kemPrivateKeyFromPkcs8(der).kem).toBe(kemId);
    const back = parseEchKeyFile(text, 'k.pem');
    expect(back.privateKey.publicKey).toEqual(key.config.publicKey);
    const path = join(dir, `${name}-single.pem`);
    await writeEchKeyFile(path, key.config, key.privateKeyRaw);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    // a truncated seed is a key-file error naming the file
    const broken = text.replace(/-----BEGIN PRIVATE KEY-----\n[^-]+/, `-----BEGIN PRIVATE KEY-----\n${der.subarray(0, der.length - 1).toString('base64')}\n`);
    expect(() => parseEchKeyFile(broken, 'broken.pem')).toThrow(/broken\.pem/);
  });

  it('our ECH client and server: accepted end to end, with X25519, X25519MLKEM768, and a HelloRetryRequest for X25519MLKEM768', async () => {
    const key = generateEchKey({ publicName: 'cover.example', kem: name, configId: 9 });
    const keys = new EchKeySet([key]);
    const cover = pki.leaf('ec', ['cover.example']);
    const secret = pki.leaf('ec', ['secret.example']);
    const seen: { ech: string; configId: unknown; group: string | undefined }[] = [];
    const srv = await startServer(
      { key: cover.key, cert: cover.cert, certificates: [{ key: secret.key, cert: secret.cert }], onClientHello: createEchHook({ keys }) },
      (s: TlsSocket) => {
        seen.push({ ech: s.echStatus, configId: s.attributes['echConfigId'], group: s.group });
        s.pipe(s);
      },
    );
    try {
      // the third offers the hybrid group without a share: HelloRetryRequest (ECH accepted across it)
      for (const ecdhCurve of ['X25519', 'X25519MLKEM768', 'X25519:X25519MLKEM768']) {
        const r = await connectEch({ host: '127.0.0.1', port: srv.port, servername: 'secret.example', ca: pki.caPem, echConfigList: keys.retryConfigList()!, ecdhCurve });
        expect(r.echStatus).toBe('accepted');
        expect(r.helloRetry).toBe(ecdhCurve.includes(':'));
        expect(r.peerCertificate?.subject).toMatch(/secret\.example/);
        await new Promise<void>((resolve, reject) => {
          r.socket.once('data', () => resolve());
          r.socket.once('error', reject);
          r.socket.write('ping');
        });
        r.socket.destroy();
      }
      expect(seen).toEqual([
        { ech: 'accepted', configId: 9, group: 'X25519' },
        { ech: 'accepted', configId: 9, group: 'X25519MLKEM768' },
        { ech: 'accepted', configId: 9, group: 'X25519MLKEM768' },
      ]);
      expect(srv.errors).toEqual([]);
    } finally {
      await srv.close();
    }
  }, 60_000);
});

describe('a key directory with a PQ and a classical key side by side', () => {
  it('keygen --kem x-wing and --kem x25519 into one directory: the list carries both, the server loads both', async () => {
    const keysDir = join(dir, 'mixed');
    const run = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, ...args], { timeout: 30_000 });
    const a = JSON.parse((await run('keygen', '--public-name', 'cover.example', '--kem', 'x-wing', '--out', keysDir)).stdout);
    const b = JSON.parse((await run('keygen', '--public-name', 'cover.example', '--kem', 'x25519', '--out', keysDir)).stdout);
    expect(a.kem).toBe('x-wing');
    expect(b.kem).toBe('x25519');
    const bad = await run('keygen', '--public-name', 'cover.example', '--kem', 'kyber', '--out', keysDir).then(
      () => undefined,
      (e: { code: number; stderr: string }) => e,
    );
    expect(bad?.code).not.toBe(0);
    expect(bad?.stderr).toMatch(/ml-kem-768, x-wing/);
    expect(bad?.stderr).not.toMatch(/\n\s+at /); // no stack trace
    const keys = await loadEchKeyDirectory(keysDir);
    const kems = decodeEchConfigList(keys.retryConfigList()!).configs.map((c) => c.kemId).sort((x, y) => x - y);
    expect(kems).toEqual([0x0020, PqKemId.XWing]);
    const files = await readFile(join(keysDir, (await import('node:fs')).readdirSync(keysDir).find((f) => f.endsWith('.pem'))!), 'utf8');
    expect(files).toContain('-----BEGIN PRIVATE KEY-----');
  }, 60_000);
});

describe('BoringSSL (no PQ HPKE) given [PQ config, X25519 config]', () => {
  it('skips the PQ configs and is accepted with the X25519 one', async () => {
    const pq = generateEchKey({ publicName: 'cover.example', kem: 'ml-kem-768', configId: 1 });
    const xw = generateEchKey({ publicName: 'cover.example', kem: 'x-wing', configId: 2 });
    const classic = generateEchKey({ publicName: 'cover.example', kem: 'x25519', configId: 3 });
    const keys = new EchKeySet([pq, xw, classic]);
    const list = encodeEchConfigList([pq.config, xw.config, classic.config]);
    const both = pki.leaf('ec', ['secret.example', 'cover.example']);
    const seen: { ech: string; configId: unknown; group: string | undefined }[] = [];
    const srv = await startServer({ key: both.key, cert: both.cert, onClientHello: createEchHook({ keys }) }, (s: TlsSocket) => {
      seen.push({ ech: s.echStatus, configId: s.attributes['echConfigId'], group: s.group });
      s.pipe(s);
    });
    try {
      const r = await runClient({ port: srv.port, sni: 'secret.example', echConfigList: list, ca: join(pki.dir, 'ca.pem'), send: 'ping' });
      expect(r).toMatchObject({ handshake: true, echAccepted: true, sni: 'secret.example', response: 'ping' });
      expect(seen).toEqual([{ ech: 'accepted', configId: 3, group: 'X25519' }]);
    } finally {
      await srv.close();
    }
  }, 60_000);
});
