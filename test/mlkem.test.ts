// ML-KEM-768 (FIPS 203) and X-Wing: the node:crypto implementation (Node 24)
// and @noble/post-quantum (Node 20/22) must give the same results, and both
// must reproduce the X-Wing draft's known answers (which run ML-KEM-768
// KeyGen from a seed and Decaps).
import { describe, expect, it } from 'vitest';
import * as nodeCrypto from 'node:crypto';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ml_kem768 } from '@noble/post-quantum/ml-kem.js';
import { ml_kem768_x25519 } from '@noble/post-quantum/hybrid.js';
import { MLKEM768, mlkem768, mlkem768KeyValid, mlkem768Native, mlkem768Noble, type MlKemImpl } from '../src/crypto/mlkem.js';
import { XWING, xwingEncapsulate, xwingFromSeed } from '../src/crypto/xwing.js';
import { IllegalParameterError } from '../src/wire/alert.js';
import { distUrl, HAVE_NODE24, requireNode24InCi, runNode24 } from './helpers/node24.js';

const vectors = JSON.parse(readFileSync(new URL('./fixtures/xwing-draft08.json', import.meta.url), 'utf8')) as {
  vectors: { sk: string; pk: string; eseed: string; ct: string; ss: string }[];
};
const hex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const impls: MlKemImpl[] = [mlkem768Noble, ...(mlkem768Native ? [mlkem768Native] : [])];

describe.each(impls.map((i) => [i.name, i] as const))('ML-KEM-768 via %s', (_name, impl) => {
  it('reproduces the X-Wing draft-08 known answers (ML-KEM KeyGen from d‖z, Decaps, combiner)', () => {
    for (const v of vectors.vectors) {
      const expanded = createHash('shake256', { outputLength: 96 }).update(hex(v.sk)).digest();
      const dk = impl.fromSeed(expanded.subarray(0, 64));
      expect(toHex(dk.publicKey)).toBe(v.pk.slice(0, MLKEM768.encapsulationKey * 2));
      const x = xwingFromSeed(hex(v.sk), impl);
      expect(toHex(x.publicKey)).toBe(v.pk);
      expect(toHex(x.decapsulate(hex(v.ct)))).toBe(v.ss);
    }
  });

  it('encapsulates to keys the other library decapsulates, and the reverse', () => {
    const seed = randomBytes(64);
    const mine = impl.fromSeed(seed);
    const ref = ml_kem768.keygen(seed);
    expect(toHex(mine.publicKey)).toBe(toHex(ref.publicKey));
    const e = impl.encapsulate(ref.publicKey);
    expect(e.ciphertext.length).toBe(MLKEM768.ciphertext);
    expect(toHex(ml_kem768.decapsulate(e.ciphertext, ref.secretKey))).toBe(toHex(e.sharedSecret));
    const r = ml_kem768.encapsulate(ref.publicKey);
    expect(toHex(mine.decapsulate(r.cipherText))).toBe(toHex(r.sharedSecret));
  });

  it('X-Wing encapsulation opens with noble X-Wing and the reverse', () => {
    const seed = randomBytes(32);
    const mine = xwingFromSeed(seed, impl);
    const e = xwingEncapsulate(mine.publicKey, impl);
    expect(e.ciphertext.length).toBe(XWING.ciphertext);
    expect(toHex(ml_kem768_x25519.decapsulate(e.ciphertext, seed))).toBe(toHex(e.sharedSecret));
    const r = ml_kem768_x25519.encapsulate(mine.publicKey);
    expect(toHex(mine.decapsulate(r.cipherText))).toBe(toHex(r.sharedSecret));
  });

  it('FIPS 203 §7.2: refuses an encapsulation key with a coefficient >= q, or of the wrong length', () => {
    const { publicKey } = impl.fromSeed(randomBytes(64));
    const bad = Uint8Array.from(publicKey);
    bad[0] = 0x01; // c0 = 0xd01 = 3329 = q
    bad[1] = (bad[1]! & 0xf0) | 0x0d;
    expect(mlkem768KeyValid(publicKey)).toBe(true);
    expect(mlkem768KeyValid(bad)).toBe(false);
    expect(() => impl.encapsulate(bad)).toThrow(IllegalParameterError);
    expect(() => impl.encapsulate(publicKey.subarray(1))).toThrow(IllegalParameterError);
    // the check is on every coefficient, including the last one
    const last = Uint8Array.from(publicKey);
    last[1151] = 0xff;
    expect(() => impl.encapsulate(last)).toThrow(IllegalParameterError);
    expect(() => impl.fromSeed(randomBytes(64)).decapsulate(new Uint8Array(1087))).toThrow(IllegalParameterError);
  });
});

describe('mlkem768()', () => {
  it('is node:crypto when Node has ML-KEM, else noble', () => {
    const nodeHasKem = typeof (nodeCrypto as unknown as { encapsulate?: unknown }).encapsulate === 'function';
    expect(mlkem768().name).toBe(nodeHasKem ? 'node:crypto' : '@noble/post-quantum');
  });
});

describe('node:crypto ML-KEM on Node 24 (spawned)', () => {
  it('Node 24 is present under CI', () => requireNode24InCi());
  it.runIf(HAVE_NODE24)('native agrees with noble byte for byte: seed keygen, both directions of encaps/decaps, implicit rejection, X-Wing KATs, Node 24 PKCS#8 seed form', async () => {
    const out = await runNode24(`
      import { mlkem768, mlkem768Native, mlkem768Noble, MLKEM768_PKCS8_PREFIX } from ${JSON.stringify(distUrl('crypto/mlkem.js'))};
      import { generateKeyPairSync, createPublicKey } from 'node:crypto';
      import { xwingFromSeed, xwingEncapsulate } from ${JSON.stringify(distUrl('crypto/xwing.js'))};
      import { randomBytes, createHash } from 'node:crypto';
      import { readFileSync } from 'node:fs';
      const v = JSON.parse(readFileSync('test/fixtures/xwing-draft08.json', 'utf8')).vectors;
      const hex = (b) => Buffer.from(b).toString('hex');
      const r = { selected: mlkem768().name, native: !!mlkem768Native, agree: 0, kat: 0, pkcs8: false };
      // Node 24's own PKCS#8 export is the seed form our key files use.
      const gen = generateKeyPairSync('ml-kem-768');
      const der = gen.privateKey.export({ format: 'der', type: 'pkcs8' });
      const prefix = Buffer.from(MLKEM768_PKCS8_PREFIX);
      const pub = Buffer.from(createPublicKey(gen.privateKey).export({ format: 'jwk' }).pub, 'base64url');
      r.pkcs8 = der.length === 86 && der.subarray(0, 22).equals(prefix) && hex(mlkem768Noble.fromSeed(der.subarray(22)).publicKey) === hex(pub);
      for (let i = 0; i < 20; i++) {
        const seed = randomBytes(64);
        const a = mlkem768Native.fromSeed(seed), b = mlkem768Noble.fromSeed(seed);
        if (hex(a.publicKey) !== hex(b.publicKey)) throw new Error('public keys differ');
        const e1 = mlkem768Native.encapsulate(a.publicKey);
        if (hex(b.decapsulate(e1.ciphertext)) !== hex(e1.sharedSecret)) throw new Error('noble cannot open native');
        const e2 = mlkem768Noble.encapsulate(b.publicKey);
        if (hex(a.decapsulate(e2.ciphertext)) !== hex(e2.sharedSecret)) throw new Error('native cannot open noble');
        const junk = randomBytes(1088); // implicit rejection must agree too
        if (hex(a.decapsulate(junk)) !== hex(b.decapsulate(junk))) throw new Error('implicit rejection differs');
        r.agree++;
      }
      for (const t of v) {
        const x = xwingFromSeed(Buffer.from(t.sk, 'hex'), mlkem768Native);
        if (hex(x.publicKey) !== t.pk || hex(x.decapsulate(Buffer.from(t.ct, 'hex'))) !== t.ss) throw new Error('X-Wing KAT');
        r.kat++;
      }
      console.log(JSON.stringify(r));
    `);
    expect(JSON.parse(out)).toEqual({ selected: 'node:crypto', native: true, agree: 20, kat: 2, pkcs8: true });
  }, 120_000);
});
