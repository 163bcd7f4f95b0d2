/**
 * The pooled random bytes of src/crypto/random.ts (public values: server
 * random, ticket IVs): fresh, distinct, own memory, across pool refills; one
 * CSPRNG call per 4 KiB rather than per value; session tickets take their IV
 * from the pool (no randomBytes per ticket).
 */
import * as nodeCrypto from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';

vi.mock('node:crypto', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:crypto')>();
  const native = orig as unknown as Record<string, unknown>;
  return {
    ...orig,
    encapsulate: native.encapsulate,
    decapsulate: native.decapsulate,
    randomBytes: vi.fn(orig.randomBytes),
    randomFillSync: vi.fn(orig.randomFillSync),
  };
});

const { randomBytes, randomFillSync } = nodeCrypto;
const { randomPublicBytes } = await import('../src/crypto/random.js');
const { TicketKeys } = await import('../src/tls13/tickets.js');

describe('randomPublicBytes', () => {
  it('gives distinct values of the asked length in their own memory, across refills', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 600; i++) {
      const n = [12, 32, 1, 255, 256][i % 5]!;
      const b = randomPublicBytes(n);
      expect(b).toBeInstanceOf(Uint8Array);
      expect(b.length).toBe(n);
      expect(b.byteOffset).toBe(0);
      expect(b.buffer.byteLength).toBe(n); // not a view of the pool
      if (n >= 12) {
        const h = Buffer.from(b).toString('hex');
        expect(seen.has(h)).toBe(false);
        seen.add(h);
      }
    }
    const big = randomPublicBytes(5000);
    expect(big.length).toBe(5000);
    expect(big.some((x) => x !== 0)).toBe(true);
  });

  it('one randomFillSync per 4 KiB, not one CSPRNG call per value', () => {
    vi.mocked(randomFillSync).mockClear();
    vi.mocked(randomBytes).mockClear();
    for (let i = 0; i < 256; i++) randomPublicBytes(32); // 8 KiB
    expect(vi.mocked(randomFillSync).mock.calls.length).toBeGreaterThanOrEqual(2);
    expect(vi.mocked(randomFillSync).mock.calls.length).toBeLessThanOrEqual(3);
    expect(vi.mocked(randomBytes)).not.toHaveBeenCalled();
  });

  it('session tickets: IVs from the pool, distinct, and the tickets still open', () => {
    const keys = new TicketKeys({ secret: new Uint8Array(48).fill(3) });
    const state = { suite: 0x1301, psk: new Uint8Array(32).fill(1), createdAt: 1_700_000_000_000, lifetime: 7200, ageAdd: 5, servername: 'a.test', alpn: 'h2' };
    vi.mocked(randomBytes).mockClear();
    const ivs = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const t = keys.seal(state);
      ivs.add(Buffer.from(t.subarray(8, 20)).toString('hex'));
      expect(keys.open(t)).toEqual(state);
    }
    expect(ivs.size).toBe(50);
    expect(vi.mocked(randomBytes)).not.toHaveBeenCalled();
  });
});
