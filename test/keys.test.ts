import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AeadId, KdfId } from 'hpke-js';
import { EchKeySet } from '../src/keys/key-set.js';
import { defaultCipherSuites, generateEchKey, KemName } from '../src/keys/generate.js';
import { loadEchKeyDirectory, parseEchKeyFile, readEchKeyFile, writeEchKeyFile } from '../src/keys/files.js';
import { parseEchPem } from '../src/keys/pem.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { referenceSealer, x25519Share } from './helpers/reference-keys.js';

// RFC 9934 §3, Figure 1.
const RFC9934_FILE = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VuBCIEICjd4yGRdsoP9gU7YT7My8DHx1Tjme8GYDXrOMCi8v1V
-----END PRIVATE KEY-----
-----BEGIN ECHCONFIG-----
AD7+DQA65wAgACA8wVN2BtscOl3vQheUzHeIkVmKIiydUhDCliA4iyQRCwAEAAEA
AQALZXhhbXBsZS5jb20AAA==
-----END ECHCONFIG-----
`;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-keys-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('key generation and decryption, every KEM and AEAD', () => {
  for (const kem of Object.keys(KemName) as Array<keyof typeof KemName>) {
    for (const suite of defaultCipherSuites(KemName[kem])) {
      it(`${kem} kdf=${suite.kdfId} aead=${suite.aeadId}: our seal and hpke-js seal both open`, async () => {
        const key = generateEchKey({ publicName: 'cover.example', kem, maximumNameLength: 20 });
        const keys = new EchKeySet([key]);
        for (const sealer of [createEchSealer, referenceSealer]) {
          const h = await buildEchClientHello({ serverName: 'inner.example', keyShares: [x25519Share()] }, { config: key.config, sealer, suite });
          const r = await decryptClientHello(h.outerMessage, keys);
          expect(r.status).toBe('accepted');
          expect(r.status === 'accepted' && r.innerServerName).toBe('inner.example');
        }
      });
    }
  }

  it('refuses bad options with typed errors', () => {
    expect(() => generateEchKey({ publicName: '192.0.2.7' })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => generateEchKey({ publicName: 'a.example', kem: 'x448' as never })).toThrow(expect.objectContaining({ code: 'ERR_INVALID_ARGUMENT' }));
    expect(() => generateEchKey({ publicName: 'a.example', maximumNameLength: 256 })).toThrow(/maximumNameLength/);
  });
});

describe('key set', () => {
  it('looks keys up by config_id and suite, refuses collisions and mismatched keys', () => {
    const a = generateEchKey({ publicName: 'cover.example', configId: 1 });
    const b = generateEchKey({ publicName: 'cover.example', configId: 2, cipherSuites: [{ kdfId: KdfId.HkdfSha256, aeadId: AeadId.Chacha20Poly1305 }] });
    const set = new EchKeySet([a, b]);
    expect(set.candidates(1, { kdfId: 1, aeadId: 1 })).toHaveLength(1);
    expect(set.candidates(2, { kdfId: 1, aeadId: 1 })).toHaveLength(0);
    expect(set.candidates(2, { kdfId: 1, aeadId: 3 })).toHaveLength(1);
    expect(set.candidates(3, { kdfId: 1, aeadId: 1 })).toHaveLength(0);
    expect(set.allCandidates({ kdfId: 1, aeadId: 3 })).toHaveLength(2);
    expect(() => set.add(generateEchKey({ publicName: 'cover.example', configId: 1 }))).toThrow(/already used/);
    const c = generateEchKey({ publicName: 'cover.example', configId: 9 });
    expect(() => set.add({ ...c, privateKey: a.privateKey })).toThrow(/does not match/);
    const seen = new Set([1, 2]);
    for (let i = 0; i < 50; i++) {
      const id = set.unusedConfigId();
      expect(seen.has(id)).toBe(false);
      set.add(generateEchKey({ publicName: 'cover.example', configId: id }));
      seen.add(id);
    }
    expect(set.remove(1)).toBe(true);
    expect(set.get(1)).toBeUndefined();
  });

  it('retry list holds only keys marked for retry, in order', () => {
    const a = generateEchKey({ publicName: 'cover.example', configId: 1 });
    const b = generateEchKey({ publicName: 'cover.example', configId: 2, retry: false });
    const c = generateEchKey({ publicName: 'cover.example', configId: 3 });
    const set = new EchKeySet([a, b, c]);
    expect(set.retryConfigs().map((x) => x.configId)).toEqual([1, 3]);
    expect(new EchKeySet([b]).retryConfigList()).toBeUndefined();
  });
});

describe('ECH PEM key files (RFC 9934)', () => {
  it('loads the RFC 9934 example: the private key matches its ECHConfig', () => {
    const key = parseEchKeyFile(RFC9934_FILE, 'rfc9934.pem');
    expect(key.config.publicName).toBe('example.com');
    expect(key.config.configId).toBe(0xe7);
    expect(Buffer.from(key.privateKey.publicKey)).toEqual(Buffer.from(key.config.publicKey));
  });

  it('writes with mode 0600 and reads back the same key', async () => {
    const key = generateEchKey({ publicName: 'cover.example', kem: 'p256' });
    const path = join(dir, 'k.pem');
    await writeEchKeyFile(path, key.config, key.privateKeyRaw);
    expect((await stat(path)).mode & 0o777).toBe(0o600);
    const text = await readFile(path, 'utf8');
    expect(text).toMatch(/^-----BEGIN PRIVATE KEY-----\n[\s\S]+-----END PRIVATE KEY-----\n-----BEGIN ECHCONFIG-----\n/);
    const back = await readEchKeyFile(path);
    expect(back.config.raw).toEqual(key.config.raw);
    // ignores content after the ECHCONFIG block (RFC 9934 §3)
    expect(parseEchKeyFile(text + '\ntrailing notes\n-----BEGIN FOO-----\nAA==\n-----END FOO-----\n').config.raw).toEqual(key.config.raw);
  });

  it('loads a directory; *.retired.pem decrypts but is not retried', async () => {
    const d = join(dir, 'set');
    await import('node:fs/promises').then((fs) => fs.mkdir(d));
    const a = generateEchKey({ publicName: 'cover.example', configId: 10 });
    const b = generateEchKey({ publicName: 'cover.example', configId: 11 });
    await writeEchKeyFile(join(d, 'a.pem'), a.config, a.privateKeyRaw);
    await writeEchKeyFile(join(d, 'b.retired.pem'), b.config, b.privateKeyRaw);
    const set = await loadEchKeyDirectory(d);
    expect(set.size).toBe(2);
    expect(set.retryConfigs().map((c) => c.configId)).toEqual([10]);
    await expect(loadEchKeyDirectory(join(dir, 'missing'))).rejects.toMatchObject({ code: 'ERR_KEY_FILE' });
  });

  it('malformed files give ERR_KEY_FILE with a reason', async () => {
    const key = generateEchKey({ publicName: 'cover.example' });
    const other = generateEchKey({ publicName: 'cover.example' });
    const path = join(dir, 'x.pem');
    await writeEchKeyFile(path, key.config, key.privateKeyRaw);
    const good = await readFile(path, 'utf8');
    const ech = good.slice(good.indexOf('-----BEGIN ECHCONFIG'));
    const priv = good.slice(0, good.indexOf('-----BEGIN ECHCONFIG'));
    await writeEchKeyFile(path, other.config, other.privateKeyRaw);
    const otherEch = (await readFile(path, 'utf8')).slice(good.indexOf('-----BEGIN ECHCONFIG'));
    const cases: Array<[string, string, RegExp]> = [
      ['no ECHCONFIG', priv, /no ECHCONFIG block/],
      ['no private key', ech, /no PRIVATE KEY block/],
      ['mismatched key', priv + otherEch, /no ECHConfig in the file matches its private key/],
      ['bad base64', priv + '-----BEGIN ECHCONFIG-----\n@@@@\n-----END ECHCONFIG-----\n', /not valid base64/],
      ['truncated list', priv + '-----BEGIN ECHCONFIG-----\nAD7+DQ==\n-----END ECHCONFIG-----\n', /not a valid ECHConfigList/],
      ['other block', '-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n' + ech, /unexpected PEM block/],
      ['garbage key', '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n' + ech, /not a usable HPKE KEM key/],
    ];
    for (const [name, text, re] of cases) {
      expect(() => parseEchKeyFile(text), name).toThrow(re);
      try {
        parseEchKeyFile(text);
      } catch (e) {
        expect((e as { code: string }).code, name).toBe('ERR_KEY_FILE');
      }
    }
    expect(() => parseEchPem('nothing')).toThrow(/no ECHCONFIG/);
    await writeFile(join(dir, 'unreadable.pem'), '');
    await expect(readEchKeyFile(join(dir, 'nope.pem'))).rejects.toThrow(/cannot read .*ENOENT/);
  });
});

describe('key file parser under random damage', () => {
  it('random text and mutated files throw only ERR_KEY_FILE', async () => {
    const { default: fc } = await import('fast-check');
    const key = generateEchKey({ publicName: 'cover.example' });
    const path = join(dir, 'fuzz.pem');
    await writeEchKeyFile(path, key.config, key.privateKeyRaw);
    const good = await readFile(path, 'utf8');
    const check = (text: string) => {
      try {
        parseEchKeyFile(text);
      } catch (e) {
        expect((e as { code?: string }).code).toBe('ERR_KEY_FILE');
      }
    };
    fc.assert(fc.property(fc.string({ maxLength: 300 }), check), { numRuns: 300 });
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(good.length - 1), fc.constantFrom('A', '/', '-', '\n', '=', 'x', ' ')), { minLength: 1, maxLength: 4 }), (muts) => {
        const chars = [...good];
        for (const [i, c] of muts) chars[i] = c;
        check(chars.join(''));
      }),
      { numRuns: 300 },
    );
  });
});
