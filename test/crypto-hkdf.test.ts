/**
 * HMAC, HKDF and HKDF-Expand-Label of src/crypto/hkdf.ts (built on the
 * one-shot hash) against node:crypto's createHmac / hkdfSync, for random
 * inputs and both TLS 1.3 hashes; the running Transcript against a plain hash
 * of the concatenated messages; and the structural fact that the key
 * schedule makes no createHmac call and the transcript no native Hash object,
 * and that no digest comes back as a node:crypto Buffer (a native backing
 * store per digest). RFC 8448 vectors: test/tls13-engine.test.ts.
 */
import * as nodeCrypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import * as fc from 'fast-check';

vi.mock('node:crypto', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:crypto')>();
  const native = orig as unknown as Record<string, unknown>;
  // crypto/mlkem.ts probes for native ML-KEM (Node ≥ 24): keep those names defined.
  return { ...orig, encapsulate: native.encapsulate, decapsulate: native.decapsulate, createHmac: vi.fn(orig.createHmac), createHash: vi.fn(orig.createHash), hash: vi.fn(orig.hash) };
});

const { createHash, createHmac, hkdfSync } = nodeCrypto;
const hk = await import('../src/crypto/hkdf.js');
const ks = await import('../src/tls13/key-schedule.js');
const { acceptConfirmation } = await import('../src/ech/confirmation.js');
const { suiteById } = await import('../src/tls13/suites.js');

type HashName = 'sha256' | 'sha384';
const HASHES: HashName[] = ['sha256', 'sha384'];
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const refHmac = (h: HashName, k: Uint8Array, d: Uint8Array) => new Uint8Array(createHmac(h, k).update(d).digest());

/** RFC 9846 §7.1 HkdfLabel, built the plain way. */
function refLabel(length: number, label: string, context: Uint8Array): Uint8Array {
  const l = Buffer.from(`tls13 ${label}`, 'utf8');
  return new Uint8Array(Buffer.concat([Buffer.from([length >> 8, length & 255, l.length]), l, Buffer.from([context.length]), context]));
}

describe('equals node:crypto for random inputs', () => {
  for (const h of HASHES) {
    const n = h === 'sha256' ? 32 : 48;
    it(`${h}: hmac = createHmac (keys empty, short, one block, over-long)`, () => {
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 400 }), (key, data) => {
          expect(hex(hk.hmac(h, key, data))).toBe(hex(refHmac(h, key, data)));
        }),
        { numRuns: 150 },
      );
    });

    it(`${h}: hkdfExtract / hkdfExpand = hkdfSync, lengths 0 .. 255·HashLen`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 100 }),
          fc.uint8Array({ maxLength: 200 }),
          fc.integer({ min: 0, max: 255 * n }),
          (salt, ikm, info, length) => {
            const prk = hk.hkdfExtract(h, salt, ikm);
            expect(hex(prk)).toBe(hex(refHmac(h, salt.length ? salt : new Uint8Array(n), ikm)));
            const okm = hk.hkdfExpand(h, prk, info, length);
            expect(okm.length).toBe(length);
            if (length > 0 && info.length <= 1024) {
              // hkdfSync = Extract then Expand
              expect(hex(okm)).toBe(Buffer.from(hkdfSync(h, ikm, salt, info, length)).toString('hex'));
            }
          },
        ),
        { numRuns: 120 },
      );
      expect(() => hk.hkdfExpand(h, new Uint8Array(n), new Uint8Array(0), 255 * n + 1)).toThrow();
    });

    it(`${h}: hkdfExpandLabel = HKDF-Expand over the RFC 9846 §7.1 HkdfLabel; encodeHkdfLabel too`, () => {
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: n, maxLength: n }),
          fc.string({ maxLength: 40 }),
          fc.uint8Array({ maxLength: 64 }),
          fc.integer({ min: 0, max: 3 * n + 5 }),
          (secret, label, context, length) => {
            const info = refLabel(length, label, context);
            expect(hex(hk.encodeHkdfLabel(length, label, context))).toBe(hex(info));
            expect(hex(hk.encodeHkdfLabel(length, Buffer.from(label, 'utf8'), context))).toBe(hex(info));
            // HKDF-Expand (RFC 5869 §2.3) step by step with createHmac
            const t: Uint8Array[] = [];
            let prev = new Uint8Array(0);
            for (let i = 1; t.length * n < length; i++) {
              prev = refHmac(h, secret, new Uint8Array([...prev, ...info, i]));
              t.push(prev);
            }
            const ref = Buffer.concat(t).subarray(0, length).toString('hex');
            expect(hex(hk.hkdfExpandLabel(h, secret, label, context, length))).toBe(ref);
          },
        ),
        { numRuns: 120 },
      );
    });

    it(`${h}: Transcript digests equal a hash of the concatenation at every step, and are independent copies`, () => {
      const t = new hk.Transcript(h);
      const msgs: Uint8Array[] = [];
      for (let i = 0; i < 6; i++) {
        const m = nodeCrypto.randomBytes(10 + i * 37);
        t.update(m);
        msgs.push(m);
        const want = createHash(h).update(Buffer.concat(msgs)).digest('hex');
        const a = t.digest();
        expect(hex(a)).toBe(want);
        a.fill(0); // a caller scribbling on its copy changes nothing
        expect(hex(t.digest())).toBe(want);
        expect(hex(t.clone().digest())).toBe(want);
        expect(hex(t.digestWith(m))).toBe(createHash(h).update(Buffer.concat([...msgs, m])).digest('hex'));
      }
    });
  }
});

describe('no createHmac on the handshake path', () => {
  it('key schedule, traffic keys, Finished, resumption PSK and the ECH confirmation make no createHmac call', () => {
    const suite = suiteById(0x1301)!;
    vi.mocked(createHmac).mockClear();
    const s = new ks.KeySchedule('sha256');
    const th = hk.hashBytes('sha256', new Uint8Array([1, 2, 3]));
    const hs = s.handshakeSecrets(new Uint8Array(32).fill(7), th);
    ks.trafficKeys(suite, hs.server);
    ks.finishedVerifyData('sha256', hs.server, th);
    const ap = s.applicationSecrets(th);
    ks.trafficKeys(suite, ap.client);
    ks.resumptionPsk('sha256', s.resumptionMasterSecret(th), new Uint8Array(8));
    acceptConfirmation('sha256', new Uint8Array(32).fill(1), th);
    expect(vi.mocked(createHmac)).not.toHaveBeenCalled();
  });
});

describe('no Buffer per HMAC', () => {
  it('the key schedule reuses its HMAC message buffers: no Buffer allocated once each length was seen', () => {
    const suite = suiteById(0x1301)!;
    const run = (): void => {
      const s = new ks.KeySchedule('sha256');
      const th = hk.hashBytes('sha256', new Uint8Array([1, 2, 3]));
      const hs = s.handshakeSecrets(new Uint8Array(32).fill(7), th);
      ks.trafficKeys(suite, hs.server);
      ks.trafficKeys(suite, hs.client);
      ks.finishedVerifyData('sha256', hs.server, th);
      const ap = s.applicationTrafficSecrets(th);
      ks.trafficKeys(suite, ap.client);
      ks.trafficKeys(suite, ap.server);
      ks.finishedVerifyData('sha256', hs.client, th);
      ks.resumptionPsk('sha256', s.resumptionMasterSecret(th), new Uint8Array(8));
    };
    run();
    const spies = [vi.spyOn(Buffer, 'allocUnsafe'), vi.spyOn(Buffer, 'allocUnsafeSlow'), vi.spyOn(Buffer, 'alloc')];
    try {
      run();
      // Before: a Buffer.allocUnsafe per HMAC (20 in this run).
      for (const spy of spies) expect(spy).not.toHaveBeenCalled();
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });
});

describe('no native Hash object in the transcript', () => {
  it("a server handshake's transcript steps (ECH confirmation, five digests) make no createHash and no Hash copy", () => {
    // Every node:crypto Hash is a native object freed by a weak callback in the
    // GC pause; the transcript hashes its buffered bytes with crypto.hash instead.
    const copy = vi.spyOn(Object.getPrototypeOf(createHash('sha256')) as { copy: () => unknown }, 'copy');
    vi.mocked(createHash).mockClear();
    const m = (n: number) => nodeCrypto.randomBytes(n);
    const ch = m(600), sh = m(90), ee = m(20), cert = m(450), cv = m(80), fin = m(36), cfin = m(36);
    const t = hk.Transcript.fromMessages('sha256', ch);
    const confirm = t.digestWith(sh);
    t.update(sh);
    const hs = t.digest();
    t.update(ee).update(cert);
    const cvInput = t.digest();
    t.update(cv);
    const finInput = t.digest();
    t.digest();
    t.update(fin);
    const ap = t.digest();
    t.update(cfin);
    const res = t.digest();
    expect(vi.mocked(createHash)).not.toHaveBeenCalled();
    expect(copy).not.toHaveBeenCalled();
    copy.mockRestore();
    const ref = (...parts: Uint8Array[]) => createHash('sha256').update(Buffer.concat(parts)).digest('hex');
    expect(hex(confirm)).toBe(ref(ch, sh));
    expect(hex(hs)).toBe(ref(ch, sh));
    expect(hex(cvInput)).toBe(ref(ch, sh, ee, cert));
    expect(hex(finInput)).toBe(ref(ch, sh, ee, cert, cv));
    expect(hex(ap)).toBe(ref(ch, sh, ee, cert, cv, fin));
    expect(hex(res)).toBe(ref(ch, sh, ee, cert, cv, fin, cfin));
  });
});

describe('no node:crypto Buffer per digest', () => {
  it('transcript digests, hashBytes, messageHash and HMACs ask crypto.hash for binary strings, never a Buffer', () => {
    // A Buffer returned by node:crypto owns a native backing store (external
    // memory the GC frees); the digest was copied into a Uint8Array anyway.
    const hash = vi.mocked(nodeCrypto.hash);
    hash.mockClear();
    const m = (n: number) => nodeCrypto.randomBytes(n);
    const ch = m(600), sh = m(90), ee = m(700);
    for (const h of HASHES) {
      const t = hk.Transcript.fromMessages(h, ch);
      const a = t.digestWith(sh);
      t.update(sh).update(ee);
      const b = t.digest();
      const c = hk.hashBytes(h, ch);
      const mh = hk.messageHash(h, ch);
      const d = hk.hkdfExpandLabel(h, hk.hkdfExtract(h, new Uint8Array(0), b), 'derived', c, 16);
      const ref = (...parts: Uint8Array[]) => createHash(h).update(Buffer.concat(parts)).digest('hex');
      expect(hex(a)).toBe(ref(ch, sh));
      expect(hex(b)).toBe(ref(ch, sh, ee));
      expect(hex(c)).toBe(ref(ch));
      expect(hex(mh.subarray(4))).toBe(ref(ch));
      expect(d.length).toBe(16);
      for (const x of [a, b, c]) expect(x.buffer.byteLength).toBe(hk.hashLength(h)); // own bytes, not a view of a pool
    }
    expect(hash.mock.calls.length).toBeGreaterThan(0);
    for (const call of hash.mock.calls) expect(call[2]).toBe('binary');
  });
});

describe('key schedule without a PSK', () => {
  it('the Early Secret and its "derived" secret are computed once per hash, not per handshake (RFC 8448 values)', async () => {
    const { KeySchedule } = await import('../src/tls13/key-schedule.js');
    const hash = vi.mocked(nodeCrypto.hash);
    const shared = Buffer.from('8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d', 'hex');
    const th = Buffer.from('860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8', 'hex');
    new KeySchedule('sha256').handshakeSecrets(shared, th); // first use of the hash
    hash.mockClear();
    const ks = new KeySchedule('sha256');
    const hs = ks.handshakeSecrets(shared, th);
    // RFC 8448 §3 (simple 1-RTT handshake).
    expect(hex(ks.earlySecret)).toBe('33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a');
    expect(hex(hs.client)).toBe('b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21');
    expect(hex(hs.server)).toBe('b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38');
    // HMAC = two hashes: Extract(derived, shared) and the two traffic secrets;
    // the old code also ran Extract(0, 0) and Derive-Secret(., "derived", "").
    expect(hash.mock.calls.length).toBe(6);
  });
});
