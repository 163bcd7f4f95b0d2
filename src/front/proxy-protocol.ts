/**
 * PROXY protocol version 2 headers (HAProxy's PROXY protocol spec, §2.2):
 * tells a backend the client's address and port ahead of the relayed bytes.
 *
 * @module
 */
import { isIPv4, isIPv6 } from 'node:net';
import { DecodeError, InvalidArgumentError } from '../wire/alert.js';

/** The 12-byte v2 signature. @group Front end */
export const PROXY_V2_SIGNATURE: Uint8Array = new Uint8Array([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);

/**
 * Addresses carried by a PROXY v2 header (TCP).
 * @group Front end
 */
export interface ProxyAddresses {
  sourceAddress: string;
  sourcePort: number;
  destinationAddress: string;
  destinationPort: number;
}

function ipv4Bytes(a: string): number[] {
  return a.split('.').map(Number);
}

function ipv6Bytes(a: string): number[] {
  const [head, tail] = a.split('::') as [string, string | undefined];
  const part = (s: string | undefined) => (s ? s.split(':') : []);
  let groups = part(head);
  let rest = part(tail);
  // an embedded IPv4 tail (::ffff:1.2.3.4)
  const fix = (g: string[]) => g.flatMap((x) => (x.includes('.') ? (([a, b, c, d]) => [((a! << 8) | b!).toString(16), ((c! << 8) | d!).toString(16)])(ipv4Bytes(x)) : [x]));
  groups = fix(groups);
  rest = fix(rest);
  const fill = tail === undefined ? [] : new Array(8 - groups.length - rest.length).fill('0');
  const all = [...groups, ...fill, ...rest];
  return all.flatMap((g) => {
    const v = parseInt(g, 16);
    return [v >> 8, v & 0xff];
  });
}

/**
 * Encode a PROXY v2 header for a proxied TCP connection (`PROXY` command,
 * TCP over IPv4 or IPv6; IPv4-mapped IPv6 addresses are sent as IPv4).
 * @group Front end
 * @example
 * ```ts
 * upstream.write(encodeProxyV2({ sourceAddress: '192.0.2.1', sourcePort: 5555, destinationAddress: '198.51.100.2', destinationPort: 443 }));
 * ```
 */
export function encodeProxyV2(a: ProxyAddresses): Uint8Array {
  const unmap = (x: string) => (x.startsWith('::ffff:') && isIPv4(x.slice(7)) ? x.slice(7) : x);
  const src = unmap(a.sourceAddress);
  const dst = unmap(a.destinationAddress);
  let family: number;
  let addr: number[];
  if (isIPv4(src) && isIPv4(dst)) {
    family = 0x11;
    addr = [...ipv4Bytes(src), ...ipv4Bytes(dst)];
  } else if (isIPv6(src) && isIPv6(dst)) {
    family = 0x21;
    addr = [...ipv6Bytes(src), ...ipv6Bytes(dst)];
  } else {
    throw new InvalidArgumentError(`PROXY v2 needs two addresses of one family, got ${a.sourceAddress} and ${a.destinationAddress}`);
  }
  const body = [...addr, a.sourcePort >> 8, a.sourcePort & 0xff, a.destinationPort >> 8, a.destinationPort & 0xff];
  const out = new Uint8Array(16 + body.length);
  out.set(PROXY_V2_SIGNATURE);
  out[12] = 0x21; // version 2, PROXY
  out[13] = family;
  out[14] = body.length >> 8;
  out[15] = body.length & 0xff;
  out.set(body, 16);
  return out;
}

/**
 * Decode a PROXY v2 header at the start of `buf`: the addresses (or
 * `undefined` for a LOCAL command or an unspecified family) and the header's
 * length. Returns `undefined` when more bytes are needed; throws
 * {@link DecodeError} when `buf` does not start with a v2 header.
 * @group Front end
 * @example
 * ```ts
 * const h = decodeProxyV2(firstBytes);
 * if (h) { console.log(h.addresses?.sourceAddress); rest = firstBytes.subarray(h.length); }
 * ```
 */
export function decodeProxyV2(buf: Uint8Array): { addresses: ProxyAddresses | undefined; length: number } | undefined {
  const n = Math.min(buf.length, 12);
  for (let i = 0; i < n; i++) if (buf[i] !== PROXY_V2_SIGNATURE[i]) throw new DecodeError('not a PROXY v2 header');
  if (buf.length < 16) return undefined;
  if (buf[12]! >> 4 !== 2) throw new DecodeError(`PROXY header version ${buf[12]! >> 4} is not 2`);
  const len = (buf[14]! << 8) | buf[15]!;
  if (buf.length < 16 + len) return undefined;
  const cmd = buf[12]! & 0x0f;
  const fam = buf[13]!;
  const b = buf.subarray(16, 16 + len);
  if (cmd === 0 || fam === 0) return { addresses: undefined, length: 16 + len };
  if (cmd !== 1) throw new DecodeError(`unknown PROXY v2 command ${cmd}`);
  const port = (o: number) => (b[o]! << 8) | b[o + 1]!;
  if (fam === 0x11) {
    if (len < 12) throw new DecodeError('PROXY v2 IPv4 block too short');
    return {
      addresses: { sourceAddress: [...b.subarray(0, 4)].join('.'), destinationAddress: [...b.subarray(4, 8)].join('.'), sourcePort: port(8), destinationPort: port(10) },
      length: 16 + len,
    };
  }
  if (fam === 0x21) {
    if (len < 36) throw new DecodeError('PROXY v2 IPv6 block too short');
    const v6 = (o: number) => Array.from({ length: 8 }, (_, i) => ((b[o + 2 * i]! << 8) | b[o + 2 * i + 1]!).toString(16)).join(':');
    return { addresses: { sourceAddress: v6(0), destinationAddress: v6(16), sourcePort: port(32), destinationPort: port(34) }, length: 16 + len };
  }
  return { addresses: undefined, length: 16 + len };
}
