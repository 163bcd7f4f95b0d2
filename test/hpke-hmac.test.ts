/**
 * The one-shot-hash HMAC of the HPKE hot path against node:crypto's createHmac
 * (RFC 2104), for every HPKE hash, short and over-long keys, byte and binary-string keys.
 */
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import * as fc from 'fast-check';
import { hmacScratch, type HpkeHashName } from '../src/crypto/hpke-hmac.js';

describe('HmacScratch equals createHmac', () => {
  for (const alg of ['sha256', 'sha384', 'sha512'] as HpkeHashName[]) {
    it(alg, () => {
      const h = hmacScratch(alg);
      fc.assert(
        fc.property(
          fc.uint8Array({ minLength: 0, maxLength: 200 }),
          fc.array(fc.uint8Array({ minLength: 0, maxLength: 150 }), { minLength: 1, maxLength: 3 }),
          fc.boolean(),
          (key, parts, keyAsString) => {
            const msg = Buffer.concat(parts);
            const want = createHmac(alg, key).update(msg).digest('hex');
            h.setKey(keyAsString ? Buffer.from(key).toString('binary') : key);
            const buf = h.buffer(parts);
            expect(buf.length).toBe(h.block + msg.length);
            expect(Buffer.from(h.mac(buf), 'binary').toString('hex')).toBe(want);
            // the same key again, on a buffer whose headroom already holds a pad
            expect(Buffer.from(h.mac(buf), 'binary').toString('hex')).toBe(want);
          },
        ),
        { numRuns: 60 },
      );
    });
  }
});
