// ECH acceptance signals (RFC 9849 §7.2, §7.2.1) against HKDF built the plain
// way on node:crypto's createHmac, for random inputs, both TLS hashes and
// both labels, including inputs of other lengths.
import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { acceptConfirmation, hrrAcceptConfirmation } from '../src/ech/confirmation.js';

type HashName = 'sha256' | 'sha384';
const len = (h: HashName) => (h === 'sha256' ? 32 : 48);

/** HKDF-Expand-Label(HKDF-Extract(0, random), label, context, 8), RFC 5869 / RFC 9846 §7.1, spelled out. */
function reference(h: HashName, random: Uint8Array, label: string, context: Uint8Array): Uint8Array {
  const prk = createHmac(h, Buffer.alloc(len(h))).update(random).digest();
  const l = Buffer.from(`tls13 ${label}`, 'latin1');
  const info = Buffer.concat([Buffer.from([0, 8, l.length]), l, Buffer.from([context.length]), context, Buffer.from([1])]);
  return new Uint8Array(createHmac(h, prk).update(info).digest().subarray(0, 8));
}

describe('ECH accept confirmation', () => {
  for (const h of ['sha256', 'sha384'] as const) {
    it(`${h}: equals the plain HKDF computation, again and again (no state kept between calls)`, () => {
      for (let i = 0; i < 20; i++) {
        const random = randomBytes(32);
        const th = randomBytes(len(h));
        expect(acceptConfirmation(h, random, th)).toEqual(reference(h, random, 'ech accept confirmation', th));
        expect(hrrAcceptConfirmation(h, random, th)).toEqual(reference(h, random, 'hrr ech accept confirmation', th));
      }
    });

    it(`${h}: inputs of other lengths: same result`, () => {
      const random = randomBytes(31);
      const th = randomBytes(len(h) + 1);
      expect(acceptConfirmation(h, random, th)).toEqual(reference(h, random, 'ech accept confirmation', th));
      expect(acceptConfirmation(h, randomBytes(32), new Uint8Array(0))).toHaveLength(8);
    });
  }

  it('does not keep a view of its inputs or hand out shared output', () => {
    const random = randomBytes(32);
    const th = randomBytes(32);
    const a = acceptConfirmation('sha256', random, th);
    const b = acceptConfirmation('sha256', random, th);
    expect(a).toEqual(b);
    a.fill(0);
    expect(b).toEqual(reference('sha256', random, 'ech accept confirmation', th));
  });
});
