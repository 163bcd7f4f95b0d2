/**
 * Byte-level mutations for the fuzzer: bit flips, interesting values,
 * length-field tweaks, deletions, insertions, duplications and splices, as
 * AFL and libFuzzer do, driven by a seeded {@link Rng}.
 *
 * @module
 */
import type { Rng } from './rng.js';

const INTERESTING8 = [0x00, 0x01, 0x02, 0x03, 0x0f, 0x10, 0x1f, 0x20, 0x7f, 0x80, 0xfe, 0xff];
const INTERESTING16 = [0x0000, 0x0001, 0x0002, 0x00ff, 0x0100, 0x3fff, 0x4000, 0x4100, 0x7fff, 0x8000, 0xfffe, 0xffff];

function splice(b: Uint8Array, at: number, remove: number, insert: Uint8Array): Uint8Array {
  remove = Math.max(0, Math.min(remove, b.length - at));
  const out = new Uint8Array(b.length - remove + insert.length);
  out.set(b.subarray(0, at));
  out.set(insert, at);
  out.set(b.subarray(at + remove), at + insert.length);
  return out;
}

/**
 * Apply one random mutation to `input` (never in place). `others` are inputs
 * to splice from.
 * @group Fuzz
 * @example
 * ```ts
 * const next = mutateOnce(rng, seed, corpus);
 * ```
 */
export function mutateOnce(rng: Rng, input: Uint8Array, others: readonly Uint8Array[] = []): Uint8Array {
  const b = input.slice();
  const n = b.length;
  const pos = () => rng.int(n);
  const span = () => 1 + rng.int(rng.chance(0.8) ? 8 : Math.max(1, n >> 2));
  switch (n === 0 ? 6 : rng.int(12)) {
    case 0: {
      const p = pos();
      b[p]! ^= 1 << rng.int(8);
      return b;
    }
    case 1:
      b[pos()] = rng.next() & 0xff;
      return b;
    case 2:
      b[pos()] = rng.pick(INTERESTING8);
      return b;
    case 3: {
      // A 16-bit field (most TLS length prefixes) set to a boundary value.
      if (n < 2) return b;
      const p = rng.int(n - 1);
      const v = rng.chance(0.5) ? rng.pick(INTERESTING16) : (((b[p]! << 8) | b[p + 1]!) + rng.int(9) - 4) & 0xffff;
      b[p] = v >> 8;
      b[p + 1] = v & 0xff;
      return b;
    }
    case 4: {
      const p = pos();
      b[p] = (b[p]! + rng.int(17) - 8) & 0xff;
      return b;
    }
    case 5: {
      const p = pos();
      return splice(b, p, Math.min(span(), n - p), new Uint8Array(0));
    }
    case 6:
      return splice(b, rng.int(n + 1), 0, rng.bytes(span()));
    case 7: {
      // Duplicate a range (repeated extensions, records, fields).
      const p = pos();
      const len = Math.min(span(), n - p);
      return splice(b, rng.int(n + 1), 0, b.slice(p, p + len));
    }
    case 8:
      return b.slice(0, pos());
    case 9: {
      const other = others.length ? rng.pick(others) : b;
      if (other.length === 0) return b;
      const p = rng.int(other.length);
      const len = Math.min(span(), other.length - p);
      return splice(b, rng.int(n + 1), rng.chance(0.5) ? Math.min(len, n) >> 1 : 0, other.slice(p, p + len));
    }
    case 10: {
      // Copy a range within the input over another place.
      const from = pos();
      const to = pos();
      const len = Math.min(span(), n - from, n - to);
      b.copyWithin(to, from, from + len);
      return b;
    }
    default: {
      // Fill a range with one value.
      const p = pos();
      b.fill(rng.pick(INTERESTING8), p, Math.min(n, p + span()));
      return b;
    }
  }
}

/**
 * Apply 1 to `max` stacked mutations, keeping the result at most `maxLength` bytes.
 * @group Fuzz
 * @example
 * ```ts
 * const input = mutate(rng, corpus[0], corpus, 6, 70_000);
 * ```
 */
export function mutate(rng: Rng, input: Uint8Array, others: readonly Uint8Array[], max = 6, maxLength = 70_000): Uint8Array {
  let b = input;
  const k = 1 + rng.int(max);
  for (let i = 0; i < k; i++) b = mutateOnce(rng, b, others);
  return b.length > maxLength ? b.subarray(0, maxLength) : b;
}
