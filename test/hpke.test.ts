/**
 * HPKE (RFC 9180) base mode on node:crypto: RFC 9180 A.1.1 known answers,
 * cross-checks against hpke-js for every native suite in both directions
 * (sequence 0 and 1), failure modes that must surface as DecryptError, and
 * PKCS#8 key handling.
 */
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as fc from 'fast-check';
import { CipherSuite } from 'hpke-js';
import { p256, p384 } from '@noble/curves/nist.js';
import { x25519 } from '@noble/curves/ed25519.js';
import {
  AeadId,
  createRecipientContext,
  generateKemKeyPair,
  KdfId,
  KemId,
  kemPrivateKeyFromPkcs8,
  kemPrivateKeyToPkcs8,
  kemPublicKey,
  keyScheduleBase,
  loadKemPrivateKey,
  nativeSupported,
  prepareInfo,
  RecipientContext,
  setupBaseRecipient,
  setupBaseSender,
  type HpkeSuite,
} from '../src/crypto/hpke.js';
import { DecryptError, EchError, InvalidArgumentError } from '../src/wire/alert.js';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const u8 = (b: ArrayBuffer | Uint8Array): Uint8Array => new Uint8Array(b instanceof Uint8Array ? b : b);

const KEMS = [KemId.DhkemX25519HkdfSha256, KemId.DhkemP256HkdfSha256, KemId.DhkemP384HkdfSha384] as const;
const KDFS = [KdfId.HkdfSha256, KdfId.HkdfSha384, KdfId.HkdfSha512] as const;
const AEADS = [AeadId.Aes128Gcm, AeadId.Aes256Gcm, AeadId.Chacha20Poly1305] as const;
const SUITES: HpkeSuite[] = KEMS.flatMap((kem) => KDFS.flatMap((kdf) => AEADS.map((aead) => ({ kem, kdf, aead }))));
const name = (s: HpkeSuite): string =>
  `kem 0x${s.kem.toString(16)} kdf ${s.kdf} aead ${s.aead}`;

function refSuite(s: HpkeSuite): CipherSuite {
  return new CipherSuite({ kem: s.kem as KemId, kdf: s.kdf as KdfId, aead: s.aead as AeadId });
}

function expectDecryptError(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(DecryptError);
  expect((caught as DecryptError).alert).toBe('decrypt_error');
  expect((caught as DecryptError).code).toBe('ERR_DECRYPT');
}

// Sizes around an ECH payload: info = "tls ech\0" || ECHConfig (~60-120 bytes),
// aad = ClientHelloOuterAAD (a few hundred bytes), pt = EncodedClientHelloInner.
const inputs = fc.record({
  info: fc.uint8Array({ minLength: 0, maxLength: 160 }),
  aad0: fc.uint8Array({ minLength: 0, maxLength: 400 }),
  aad1: fc.uint8Array({ minLength: 0, maxLength: 400 }),
  pt0: fc.uint8Array({ minLength: 0, maxLength: 600 }),
  pt1: fc.uint8Array({ minLength: 0, maxLength: 600 }),
});

describe('RFC 9180 A.1.1 known answers (DHKEM(X25519), HKDF-SHA256, AES-128-GCM, base)', () => {
  const suite = { kem: 0x20, kdf: 1, aead: 1 };
  const skRm = hex('4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8');
  const pkRm = '3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d';
  const enc = hex('37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431');
  const info = hex('4f6465206f6e2061204772656369616e2055726e');
  const pt = hex('4265617574792069732074727574682c20747275746820626561757479');

  it('derives pkRm from skRm', () => {
    expect(toHex(kemPublicKey(0x20, skRm))).toBe(pkRm);
    expect(toHex(loadKemPrivateKey(0x20, skRm).publicKey)).toBe(pkRm);
  });

  it('decapsulates to the shared_secret and schedules key and base_nonce', () => {
    const ss = loadKemPrivateKey(0x20, skRm).decap(enc);
    expect(toHex(ss)).toBe('fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc');
    const { key, baseNonce } = keyScheduleBase(suite, ss, info);
    expect(toHex(key)).toBe('4531685d41d65f03dc48f6b8302c05b0');
    expect(toHex(baseNonce)).toBe('56d890e5accaaf011cff4b7d');
  });

  it('opens the sequence 0 and 1 ciphertexts', () => {
    const ctx = setupBaseRecipient(suite, loadKemPrivateKey(0x20, skRm), enc, info);
    expect(ctx.seq).toBe(0);
    const ct0 = hex('f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a');
    const ct1 = hex('af2d7e9ac9ae7e270f46ba1f975be53c09f8d875bdc8535458c2494e8a6eab251c03d0c22a56b8ca42c2063b84');
    expect(toHex(ctx.open(hex('436f756e742d30'), ct0))).toBe(toHex(pt));
    expect(ctx.seq).toBe(1);
    expect(toHex(ctx.open(hex('436f756e742d31'), ct1))).toBe(toHex(pt));
    expect(ctx.seq).toBe(2);
  });
});

describe('cross-check with hpke-js, every native suite', () => {
  it('covers 27 suites, all native', () => {
    expect(SUITES).toHaveLength(27);
    for (const s of SUITES) expect(nativeSupported(s)).toBe(true);
  });

  for (const suite of SUITES) {
    it(`${name(suite)}: hpke-js seal → our open, our seal → hpke-js open, seq 0 and 1`, async () => {
      const ref = refSuite(suite);
      const kp = generateKemKeyPair(suite.kem);
      const key = loadKemPrivateKey(suite.kem, kp.privateKey);
      // hpke-js gets only our raw private key: it derives pkR itself, so a
      // successful open also proves both sides agree on the public key.
      const refSk = await ref.kem.deserializePrivateKey(kp.privateKey);
      const refPk = await ref.kem.deserializePublicKey(kp.publicKey);
      await fc.assert(
        fc.asyncProperty(inputs, async ({ info, aad0, aad1, pt0, pt1 }) => {
          // hpke-js → us
          const sender = await ref.createSenderContext({ recipientPublicKey: refPk, info });
          const c0 = u8(await sender.seal(pt0, aad0));
          const c1 = u8(await sender.seal(pt1, aad1));
          const ctx = setupBaseRecipient(suite, key, u8(sender.enc), info);
          expect(toHex(ctx.open(aad0, c0))).toBe(toHex(pt0));
          expect(toHex(ctx.open(aad1, c1))).toBe(toHex(pt1));
          expect(ctx.seq).toBe(2);
          // us → hpke-js
          const ours = setupBaseSender(suite, kp.publicKey, info);
          const d0 = ours.seal(aad0, pt0);
          const d1 = ours.seal(aad1, pt1);
          expect(ours.seq).toBe(2);
          expect(d0.length).toBe(pt0.length + 16);
          const recipient = await ref.createRecipientContext({ recipientKey: refSk, enc: ours.enc, info });
          expect(toHex(u8(await recipient.open(d0, aad0)))).toBe(toHex(pt0));
          expect(toHex(u8(await recipient.open(d1, aad1)))).toBe(toHex(pt1));
          // and our own round trip through the async facade
          const viaFacade = await createRecipientContext(suite, kp, ours.enc, info);
          expect(toHex(viaFacade.open(aad0, d0))).toBe(toHex(pt0));
        }),
        { numRuns: 3 },
      );
    });
  }
});

describe('failures are DecryptError (alert decrypt_error), never a crash', () => {
  for (const kem of KEMS) {
    const suite = { kem, kdf: KdfId.HkdfSha256, aead: AeadId.Aes128Gcm };
    describe(name(suite), () => {
      const kp = generateKemKeyPair(kem);
      const key = loadKemPrivateKey(kem, kp.privateKey);
      const info = Buffer.from('tls ech\0config', 'latin1');
      const aad = new Uint8Array(300).fill(7);
      const pt = new Uint8Array(400).fill(9);
      const sender = setupBaseSender(suite, kp.publicKey, info);
      const ct = sender.seal(aad, pt);

      it('wrong private key', () => {
        const other = loadKemPrivateKey(kem, generateKemKeyPair(kem).privateKey);
        const ctx = setupBaseRecipient(suite, other, sender.enc, info);
        expectDecryptError(() => ctx.open(aad, ct));
      });

      it('tampered ciphertext, tampered tag, tampered aad, short ciphertext; seq stays 0 and a good open still works', () => {
        const ctx = setupBaseRecipient(suite, key, sender.enc, info);
        const badCt = Uint8Array.from(ct);
        badCt[5] = (badCt[5] as number) ^ 1;
        expectDecryptError(() => ctx.open(aad, badCt));
        const badTag = Uint8Array.from(ct);
        badTag[badTag.length - 1] = (badTag[badTag.length - 1] as number) ^ 0x80;
        expectDecryptError(() => ctx.open(aad, badTag));
        const badAad = Uint8Array.from(aad);
        badAad[0] = 8;
        expectDecryptError(() => ctx.open(badAad, ct));
        expectDecryptError(() => ctx.open(aad, ct.subarray(0, 15)));
        expect(ctx.seq).toBe(0);
        expect(toHex(ctx.open(aad, ct))).toBe(toHex(pt));
        expect(ctx.seq).toBe(1);
        // a replay of the seq-0 message under seq 1 must fail
        expectDecryptError(() => ctx.open(aad, ct));
      });

      it('wrong info', () => {
        const ctx = setupBaseRecipient(suite, key, sender.enc, Buffer.from('tls ech\0other', 'latin1'));
        expectDecryptError(() => ctx.open(aad, ct));
      });

      it('enc of every wrong length', () => {
        for (const len of [0, 1, 31, 33, 64, 66, 96, 98]) {
          if (len === sender.enc.length) continue;
          const enc = new Uint8Array(len).fill(4);
          expectDecryptError(() => setupBaseRecipient(suite, key, enc, info));
          expectDecryptError(() => key.decap(enc));
        }
      });

      it('enc that is not a valid public key', () => {
        const bad = new Uint8Array(sender.enc.length);
        if (kem === KemId.DhkemX25519HkdfSha256) {
          // u = 0 and u = 1 are low-order points: the DH output is all zero.
          expectDecryptError(() => key.decap(bad));
          bad[0] = 1;
          expectDecryptError(() => key.decap(bad));
        } else {
          bad[0] = 0x04; // (0, 0) is not on the curve
          expectDecryptError(() => key.decap(bad));
          const compressed = Uint8Array.from(sender.enc);
          compressed[0] = 0x02;
          expectDecryptError(() => key.decap(compressed));
          const offCurve = Uint8Array.from(sender.enc);
          offCurve[offCurve.length - 1] = (offCurve[offCurve.length - 1] as number) ^ 1;
          expectDecryptError(() => key.decap(offCurve));
        }
      });

      it('random bytes as enc and ciphertext fail cleanly', () => {
        fc.assert(
          fc.property(fc.uint8Array({ minLength: 0, maxLength: 100 }), fc.uint8Array({ minLength: 0, maxLength: 64 }), (enc, junk) => {
            try {
              setupBaseRecipient(suite, key, enc, info).open(aad, junk);
              return false; // a random payload must never open
            } catch (e) {
              return e instanceof DecryptError && e.alert === 'decrypt_error';
            }
          }),
          { numRuns: 40 },
        );
      });
    });
  }
});

describe('key handling', () => {
  for (const kem of KEMS) {
    it(`kem 0x${kem.toString(16)}: PKCS#8 round trip, public key agrees with noble and hpke-js`, async () => {
      const kp = generateKemKeyPair(kem);
      const der = kemPrivateKeyToPkcs8(kem, kp.privateKey);
      const back = kemPrivateKeyFromPkcs8(der);
      expect(back.kem).toBe(kem);
      expect(toHex(back.privateKey)).toBe(toHex(kp.privateKey));
      expect(toHex(kemPublicKey(kem, kp.privateKey))).toBe(toHex(kp.publicKey));
      expect(toHex(loadKemPrivateKey(kem, back.privateKey).publicKey)).toBe(toHex(kp.publicKey));
      const noble =
        kem === KemId.DhkemX25519HkdfSha256
          ? x25519.getPublicKey(kp.privateKey)
          : kem === KemId.DhkemP256HkdfSha256
            ? p256.getPublicKey(kp.privateKey, false)
            : p384.getPublicKey(kp.privateKey, false);
      expect(toHex(kp.publicKey)).toBe(toHex(noble));
      // hpke-js imports our raw private key and serialises it back unchanged
      const ref = refSuite({ kem, kdf: 1, aead: 1 });
      const sk = await ref.kem.deserializePrivateKey(kp.privateKey);
      expect(toHex(u8(await ref.kem.serializePrivateKey(sk)))).toBe(toHex(kp.privateKey));
    });
  }

  it('X25519 PKCS#8 has the RFC 8410 layout', () => {
    const raw = new Uint8Array(32).fill(0x42);
    expect(toHex(kemPrivateKeyToPkcs8(0x20, raw))).toBe('302e020100300506032b656e04220420' + '42'.repeat(32));
  });

  it('a PKCS#8 key of another kind or garbage is ERR_KEY_FILE', () => {
    const ed = generateKeyPairSync('ed25519').privateKey.export({ format: 'der', type: 'pkcs8' });
    const p521 = generateKeyPairSync('ec', { namedCurve: 'P-521' }).privateKey.export({ format: 'der', type: 'pkcs8' });
    for (const der of [new Uint8Array(ed), new Uint8Array(p521), new Uint8Array([0x30, 0x03, 0x02, 0x01, 0x00])]) {
      let caught: unknown;
      try {
        kemPrivateKeyFromPkcs8(der);
      } catch (e) {
        caught = e;
      }
      expect(caught).toBeInstanceOf(EchError);
      expect((caught as EchError).code).toBe('ERR_KEY_FILE');
    }
  });

  it('raw keys of the wrong length or out of range are InvalidArgumentError', () => {
    expect(() => loadKemPrivateKey(0x20, new Uint8Array(31))).toThrow(InvalidArgumentError);
    expect(() => loadKemPrivateKey(0x10, new Uint8Array(32))).toThrow(InvalidArgumentError); // d = 0
    expect(() => loadKemPrivateKey(0x10, new Uint8Array(32).fill(0xff))).toThrow(InvalidArgumentError); // d >= n
    expect(() => kemPublicKey(0x11, new Uint8Array(32))).toThrow(InvalidArgumentError);
    expect(() => setupBaseSender({ kem: 0x10, kdf: 1, aead: 1 }, new Uint8Array(33), new Uint8Array(0))).toThrow(InvalidArgumentError);
  });

  it('a key for another KEM is refused', () => {
    const key = loadKemPrivateKey(0x20, generateKemKeyPair(0x20).privateKey);
    expect(() => setupBaseRecipient({ kem: 0x10, kdf: 1, aead: 1 }, key, new Uint8Array(65), new Uint8Array(0))).toThrow(
      InvalidArgumentError,
    );
  });
});

describe('key schedule and contexts', () => {
  const suite = { kem: 0x20, kdf: 1, aead: 3 };

  it('prepareInfo caches by identity and by content, and a prepared info equals raw info', () => {
    const info = Buffer.from('tls ech\0abc', 'latin1');
    const p1 = prepareInfo(suite, info);
    expect(prepareInfo(suite, info)).toBe(p1);
    expect(prepareInfo(suite, Buffer.from(info))).toBe(p1);
    expect(prepareInfo({ ...suite, aead: 1 }, info)).not.toBe(p1);
    // mutating the caller's array must not return a stale entry
    const mutable = Uint8Array.from(info);
    const p2 = prepareInfo(suite, mutable);
    mutable[0] = 0;
    expect(prepareInfo(suite, mutable)).not.toBe(p2);
    const ss = new Uint8Array(32).fill(1);
    expect(keyScheduleBase(suite, ss, p1)).toEqual(keyScheduleBase(suite, ss, info));
    expect(() => keyScheduleBase({ ...suite, aead: 1 }, ss, p1)).toThrow(InvalidArgumentError);
  });

  it('keyless split: decap elsewhere, then keyScheduleBase + RecipientContext', () => {
    const kp = generateKemKeyPair(0x20);
    const info = new Uint8Array([1, 2, 3]);
    const s = setupBaseSender(suite, kp.publicKey, info);
    const c0 = s.seal(new Uint8Array(0), new Uint8Array([5]));
    const c1 = s.seal(new Uint8Array(0), new Uint8Array([6]));
    const ss = loadKemPrivateKey(0x20, kp.privateKey).decap(s.enc); // the key server's part
    const ctx = new RecipientContext(suite, keyScheduleBase(suite, ss, info));
    expect([...ctx.open(new Uint8Array(0), c0)]).toEqual([5]);
    expect([...ctx.open(new Uint8Array(0), c1)]).toEqual([6]);
    expect(() => new RecipientContext(suite, { key: new Uint8Array(16), baseNonce: new Uint8Array(12) })).toThrow(InvalidArgumentError);
  });

  it('an unsupported KDF or AEAD is ERR_UNSUPPORTED', () => {
    expect(nativeSupported({ kem: 0x20, kdf: 4, aead: 1 })).toBe(false);
    expect(() => keyScheduleBase({ kem: 0x20, kdf: 4, aead: 1 }, new Uint8Array(32), new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: 'ERR_UNSUPPORTED' }),
    );
    expect(() => keyScheduleBase({ kem: 0x20, kdf: 1, aead: 0xffff }, new Uint8Array(32), new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: 'ERR_UNSUPPORTED' }),
    );
  });
});

describe('createRecipientContext falls back to hpke-js for non-native KEMs', () => {
  for (const suite of [
    { kem: KemId.DhkemX448HkdfSha512, kdf: KdfId.HkdfSha512, aead: AeadId.Aes256Gcm },
    { kem: KemId.DhkemP521HkdfSha512, kdf: KdfId.HkdfSha256, aead: AeadId.Chacha20Poly1305 },
  ]) {
    it(`kem 0x${suite.kem.toString(16)}: hpke-js seal → facade open (seq 0 and 1); bad enc → DecryptError`, async () => {
      expect(nativeSupported(suite)).toBe(false);
      const ref = refSuite(suite);
      const pair = await ref.kem.generateKeyPair();
      const raw = { kem: suite.kem, privateKey: u8(await ref.kem.serializePrivateKey(pair.privateKey)) };
      const info = Buffer.from('tls ech\0x448', 'latin1');
      const sender = await ref.createSenderContext({ recipientPublicKey: pair.publicKey, info });
      const c0 = u8(await sender.seal(new Uint8Array([1, 2, 3]), new Uint8Array([9])));
      const c1 = u8(await sender.seal(new Uint8Array([4]), new Uint8Array([8])));
      const ctx = await createRecipientContext(suite, raw, u8(sender.enc), info);
      expect([...ctx.open(new Uint8Array([9]), c0)]).toEqual([1, 2, 3]);
      expect([...ctx.open(new Uint8Array([8]), c1)]).toEqual([4]);
      await expect(createRecipientContext(suite, raw, new Uint8Array(10), info)).rejects.toBeInstanceOf(DecryptError);
      expect(() => setupBaseSender(suite, new Uint8Array(56), info)).toThrow(expect.objectContaining({ code: 'ERR_UNSUPPORTED' }));
      const wrongInfo = await createRecipientContext(suite, raw, u8(sender.enc), new Uint8Array(0));
      expect(() => wrongInfo.open(new Uint8Array([9]), c0)).toThrow(DecryptError);
    });
  }

  it('a native KEM with an unsupported KDF is ERR_UNSUPPORTED, also for a loaded key', async () => {
    const kp = generateKemKeyPair(0x20);
    const key = loadKemPrivateKey(0x20, kp.privateKey);
    await expect(createRecipientContext({ kem: 0x20, kdf: 4, aead: 1 }, key, new Uint8Array(32), new Uint8Array(0))).rejects.toMatchObject({
      code: 'ERR_UNSUPPORTED',
    });
  });

  it('setupBaseSender result can be destructured', () => {
    const kp = generateKemKeyPair(0x20);
    const { enc, seal } = setupBaseSender({ kem: 0x20, kdf: 1, aead: 1 }, kp.publicKey, new Uint8Array(0));
    const ct = seal(new Uint8Array(0), new Uint8Array([1]));
    const ctx = setupBaseRecipient({ kem: 0x20, kdf: 1, aead: 1 }, loadKemPrivateKey(0x20, kp.privateKey), enc, new Uint8Array(0));
    expect([...ctx.open(new Uint8Array(0), ct)]).toEqual([1]);
  });

  it('an unknown KEM is ERR_UNSUPPORTED', async () => {
    await expect(
      createRecipientContext({ kem: 0x7777, kdf: 1, aead: 1 }, { kem: 0x7777, privateKey: new Uint8Array(32) }, new Uint8Array(32), new Uint8Array(0)),
    ).rejects.toMatchObject({ code: 'ERR_UNSUPPORTED' });
  });
});

describe('sequence numbers beyond one byte', () => {
  it('300 messages each way agree with hpke-js (nonce XOR crosses a byte boundary)', async () => {
    const suite = { kem: 0x20, kdf: 1, aead: 1 };
    const ref = refSuite(suite);
    const kp = generateKemKeyPair(0x20);
    const info = new Uint8Array([7]);
    const ours = setupBaseSender(suite, kp.publicKey, info);
    const theirs = await ref.createRecipientContext({ recipientKey: await ref.kem.deserializePrivateKey(kp.privateKey), enc: ours.enc, info });
    const refSender = await ref.createSenderContext({ recipientPublicKey: await ref.kem.deserializePublicKey(kp.publicKey), info });
    const ctx = setupBaseRecipient(suite, loadKemPrivateKey(0x20, kp.privateKey), u8(refSender.enc), info);
    for (let i = 0; i < 300; i++) {
      const msg = new Uint8Array([i & 0xff, i >> 8]);
      expect([...u8(await theirs.open(ours.seal(msg, msg), msg))]).toEqual([...msg]);
      expect([...ctx.open(msg, u8(await refSender.seal(msg, msg)))]).toEqual([...msg]);
    }
    expect(ctx.seq).toBe(300);
  });
});

describe('suite identifiers outside the u16 range', () => {
  it('do not alias a cached suite', () => {
    const ss = new Uint8Array(32).fill(3);
    keyScheduleBase({ kem: 0x20, kdf: 1, aead: 1 }, ss, new Uint8Array(0));
    // 0 * 0x10000 + 0x10001 === 1 * 0x10000 + 1
    expect(() => keyScheduleBase({ kem: 0x20, kdf: 0, aead: 0x10001 }, ss, new Uint8Array(0))).toThrow(
      expect.objectContaining({ code: 'ERR_UNSUPPORTED' }),
    );
  });
});
