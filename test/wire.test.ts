import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { DecodeError, EchError, Reader, Writer, alertName, encode, equalBytes, fromBase64, toBase64 } from '../src/wire/index.js';

describe('Reader and Writer', () => {
  it('round-trips u8/u16/u24/u32 and nested vectors', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xff }),
        fc.integer({ min: 0, max: 0xffff }),
        fc.integer({ min: 0, max: 0xffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.uint8Array({ maxLength: 300 }),
        (a, b, c, d, bytes) => {
          const out = encode((w) => {
            w.u8(a).u16(b).u24(c).u32(d);
            w.vector16((v) => v.bytes8(bytes.subarray(0, 255)).bytes24(bytes));
          });
          const r = new Reader(out);
          expect([r.u8(), r.u16(), r.u24(), r.u32()]).toEqual([a, b, c, d]);
          const v = r.vector16();
          expect(v.bytes8()).toEqual(bytes.subarray(0, 255));
          expect(v.bytes24()).toEqual(bytes);
          v.end();
          r.end();
        },
      ),
      { numRuns: 200 },
    );
  });

  it('every strict prefix of an encoding fails with decode_error', () => {
    const out = encode((w) => w.u16(7).vector16((v) => v.bytes8(new Uint8Array([1, 2, 3])).u24(9)));
    const read = (b: Uint8Array) => {
      const r = new Reader(b);
      r.u16();
      const v = r.vector16();
      v.bytes8();
      v.u24();
      v.end();
      r.end();
    };
    read(out);
    for (let i = 0; i < out.length; i++) {
      let err: unknown;
      try {
        read(out.subarray(0, i));
      } catch (e) {
        err = e;
      }
      expect(err, `prefix ${i}`).toBeInstanceOf(DecodeError);
      expect((err as EchError).alert).toBe('decode_error');
      expect((err as EchError).code).toBe('ERR_DECODE');
    }
  });

  it('rejects trailing bytes', () => {
    const r = new Reader(new Uint8Array([0, 1, 2]));
    r.u16();
    expect(() => r.end('thing')).toThrow(/1 trailing bytes after thing/);
  });

  it('returns copies that never alias the input', () => {
    const buf = new Uint8Array([3, 1, 2, 3]);
    const b = new Reader(buf).bytes8();
    buf[1] = 99;
    expect(b[0]).toBe(1);
  });

  it('refuses values that do not fit and vectors longer than their prefix', () => {
    expect(() => new Writer().u8(256)).toThrow(EchError);
    expect(() => new Writer().u16(-1)).toThrow(EchError);
    expect(() => new Writer().bytes8(new Uint8Array(256))).toThrow(/exceeds its 8-bit/);
  });

  it('helpers behave', () => {
    expect(alertName(50)).toBe('decode_error');
    expect(alertName(121)).toBe('ech_required');
    expect(alertName(250)).toBe('unknown(250)');
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 2]))).toBe(true);
    expect(equalBytes(new Uint8Array([1, 2]), new Uint8Array([1, 3]))).toBe(false);
    expect(toBase64(fromBase64('AEX+DQ=='))).toBe('AEX+DQ==');
    expect(() => fromBase64('not base64!')).toThrow(TypeError);
  });
});

describe('copies never alias a Buffer input', () => {
  it('Reader.bytes and decodeClientHello copy even from a Buffer', async () => {
    const { decodeClientHello, encodeClientHello } = await import('../src/tls/client-hello.js');
    const { buildClientHello } = await import('../src/ech/builder.js');
    const buf = Buffer.from([2, 7, 8]);
    const b = new Reader(buf).bytes8();
    buf[1] = 99;
    expect(b[0]).toBe(7);
    const body = Buffer.from(encodeClientHello(buildClientHello({ serverName: 'a.example' })));
    const ch = decodeClientHello(body);
    const before = ch.random[0];
    body[2] = (body[2]! + 1) & 0xff;
    expect(ch.random[0]).toBe(before);
  });
});
