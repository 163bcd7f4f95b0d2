import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { decodeProxyV2, encodeProxyV2 } from '../src/front/proxy-protocol.js';
import { onlyTypedErrors } from './helpers/properties.js';

describe('PROXY protocol v2', () => {
  it('round-trips IPv4 and IPv6 addresses', () => {
    const v4 = { sourceAddress: '192.0.2.10', sourcePort: 51234, destinationAddress: '198.51.100.7', destinationPort: 443 };
    const e4 = encodeProxyV2(v4);
    expect(e4.length).toBe(28);
    expect(decodeProxyV2(e4)).toEqual({ addresses: v4, length: 28 });
    const v6 = { sourceAddress: '2001:db8:0:0:0:0:0:1', sourcePort: 1, destinationAddress: '2001:db8:0:0:0:0:0:2', destinationPort: 8443 };
    const d6 = decodeProxyV2(encodeProxyV2({ ...v6, sourceAddress: '2001:db8::1', destinationAddress: '2001:db8::2' }));
    expect(d6?.addresses).toEqual(v6);
    // IPv4-mapped addresses go out as IPv4
    expect(decodeProxyV2(encodeProxyV2({ ...v4, sourceAddress: '::ffff:192.0.2.10', destinationAddress: '::ffff:198.51.100.7' }))?.addresses).toEqual(v4);
  });

  it('property: random IPv4 endpoints round-trip', () => {
    const ip = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((t) => t.join('.'));
    fc.assert(
      fc.property(ip, ip, fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 65535 }), (s, d, sp, dp) => {
        const a = { sourceAddress: s, sourcePort: sp, destinationAddress: d, destinationPort: dp };
        expect(decodeProxyV2(encodeProxyV2(a))?.addresses).toEqual(a);
      }),
    );
  });

  it('needs more bytes for every strict prefix, and refuses what is not a v2 header', () => {
    const e = encodeProxyV2({ sourceAddress: '10.1.2.3', sourcePort: 1, destinationAddress: '10.1.2.4', destinationPort: 2 });
    for (let i = 0; i < e.length; i++) expect(decodeProxyV2(e.subarray(0, i))).toBeUndefined();
    expect(() => decodeProxyV2(new TextEncoder().encode('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n'))).toThrow(expect.objectContaining({ alert: 'decode_error' }));
    const v1 = e.slice();
    v1[12] = 0x11;
    expect(() => decodeProxyV2(v1)).toThrow(/version 1/);
    expect(() => encodeProxyV2({ sourceAddress: '10.0.0.1', sourcePort: 1, destinationAddress: '::1', destinationPort: 2 })).toThrow(/one family/);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => onlyTypedErrors((x) => decodeProxyV2(x), b)), { numRuns: 500 });
  });

  it('LOCAL command carries no addresses', () => {
    const e = encodeProxyV2({ sourceAddress: '10.1.2.3', sourcePort: 1, destinationAddress: '10.1.2.4', destinationPort: 2 });
    e[12] = 0x20;
    expect(decodeProxyV2(e)).toEqual({ addresses: undefined, length: 28 });
  });
});
