// Shared property checks for every parser: strict prefixes fail with
// decode_error, and random or mutated input throws nothing but EchError.
import { expect } from 'vitest';
import fc from 'fast-check';
import { EchError } from '../../src/wire/alert.js';

export function expectEveryPrefixFails(decode: (b: Uint8Array) => unknown, valid: Uint8Array): void {
  decode(valid); // the full input parses
  for (let i = 0; i < valid.length; i++) {
    let err: unknown;
    try {
      decode(valid.slice(0, i));
    } catch (e) {
      err = e;
    }
    expect(err, `prefix of ${i}/${valid.length} bytes should fail`).toBeInstanceOf(EchError);
    expect((err as EchError).alert, `prefix of ${i} bytes`).toBe('decode_error');
  }
}

/** Runs `decode` on `input`; anything thrown must be an EchError carrying an alert. */
export function onlyTypedErrors(decode: (b: Uint8Array) => unknown, input: Uint8Array): void {
  try {
    decode(input);
  } catch (e) {
    if (!(e instanceof EchError)) throw new Error(`untyped error ${String(e)} on input ${Buffer.from(input).toString('hex')}`);
    expect(typeof e.alert).toBe('string');
    expect(typeof e.code).toBe('string');
  }
}

/** Random bytes and single/multi-byte mutations of `valid` throw only typed errors. */
export function expectFuzzSafe(decode: (b: Uint8Array) => unknown, valid: Uint8Array, numRuns = 300): void {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 512 }), (b) => onlyTypedErrors(decode, b)), { numRuns });
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }),
      (muts) => {
        const b = valid.slice();
        for (const [i, v] of muts) b[i] = v;
        onlyTypedErrors(decode, b);
      },
    ),
    { numRuns },
  );
}
