/**
 * readFirstHandshakeMessage reads the usual first flight (one handshake
 * record holding exactly one whole message) by offsets, and everything else
 * through the record reader and HandshakeReassembler (src/tls/record.ts).
 * Cross-check against the general path (the function as it was, below) on
 * single records, several records, trailing bytes, every prefix, limits and
 * mutated headers: the same message, consumed count and errors.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { EchError } from '../src/wire/alert.js';
import { ContentType, MAX_PLAINTEXT } from '../src/tls/constants.js';
import { HandshakeReassembler, readFirstHandshakeMessage, readRecord, writeRecords } from '../src/tls/record.js';

function reference(buf: Uint8Array, maxMessage = 65536): ReturnType<typeof readFirstHandshakeMessage> {
  const hs = new HandshakeReassembler(maxMessage);
  let off = 0;
  for (;;) {
    const rec = readRecord(buf, off, MAX_PLAINTEXT);
    if (!rec) return undefined;
    if (rec.record.type !== ContentType.handshake) {
      throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', `expected a handshake record, got content type ${rec.record.type}`);
    }
    hs.push(rec.record.fragment);
    off = rec.next;
    const m = hs.next();
    if (m) {
      if (hs.pending !== 0) throw new EchError('ERR_UNEXPECTED_MESSAGE', 'unexpected_message', 'data after the first handshake message');
      return { message: m, consumed: off };
    }
  }
}

function outcome(f: () => ReturnType<typeof readFirstHandshakeMessage>): unknown {
  try {
    const r = f();
    if (!r) return r;
    expect(r.message.raw.constructor).toBe(Uint8Array); // a plain array, never a Buffer view
    expect(r.message.body.buffer).toBe(r.message.raw.buffer);
    return { type: r.message.type, raw: [...r.message.raw], body: [...r.message.body], consumed: r.consumed };
  } catch (e) {
    expect(e).toBeInstanceOf(EchError);
    return { error: (e as EchError).alert, message: (e as EchError).message };
  }
}

function agree(b: Uint8Array, what: string, maxMessage?: number): void {
  expect(outcome(() => readFirstHandshakeMessage(b, maxMessage)), what).toEqual(outcome(() => reference(b, maxMessage)));
}

/** A ClientHello-typed handshake message: type 1, uint24 length 196, body. */
const message = Uint8Array.from({ length: 200 }, (_, i) => (i === 0 ? 1 : i === 1 || i === 2 ? 0 : i === 3 ? 196 : i & 0xff));

describe('readFirstHandshakeMessage: one-record path and general path agree', () => {
  it('on one record, one record and more bytes, several records, and every prefix', () => {
    const one = writeRecords(22, message, 0x0301);
    agree(one, 'one record');
    agree(Buffer.from(one), 'one record in a Buffer');
    const more = new Uint8Array(one.length + 6);
    more.set(one);
    more.set([20, 3, 3, 0, 1, 1], one.length);
    agree(more, 'one record and a change_cipher_spec');
    agree(writeRecords(22, message, 0x0301, 50), 'four records');
    for (let i = 0; i <= one.length; i++) agree(one.subarray(0, i), `prefix ${i}`);
  });

  it('at the message-size limit and on mutated headers', () => {
    const one = writeRecords(22, message, 0x0303);
    agree(one, 'limit 196', 196);
    agree(one, 'limit 195', 195);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(9), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), (muts) => {
        const b = one.slice();
        for (const [i, v] of muts) b[i] = v;
        agree(b, 'mutation');
      }),
      { numRuns: 2000 },
    );
  });
});
