/**
 * Sending one DNS message to one server and reading its answer, over UDP
 * (falling back to TCP when the answer is truncated) or TCP (RFC 1035 §4.2,
 * RFC 7766). Failures to get any answer are `ERR_DNS_UNREACHABLE`.
 *
 * @module
 */
import { createSocket } from 'node:dgram';
import { connect, isIPv6 } from 'node:net';
import { PublishError } from './errors.js';

/**
 * A DNS server address.
 * @group DNS
 * @example
 * ```ts
 * const server: DnsServerAddress = { host: '127.0.0.1', port: 5353 };
 * ```
 */
export interface DnsServerAddress {
  host: string;
  port: number;
}

/**
 * Parse `HOST`, `HOST:PORT`, `[V6]` or `[V6]:PORT` (default port 53).
 * @group DNS
 * @example
 * ```ts
 * parseDnsServer('127.0.0.1:5353'); // { host: '127.0.0.1', port: 5353 }
 * parseDnsServer('[::1]');          // { host: '::1', port: 53 }
 * ```
 */
export function parseDnsServer(text: string): DnsServerAddress {
  const m = /^\[([0-9A-Fa-f:.]+)\](?::(\d+))?$/.exec(text) ?? /^([^:[\]]+)(?::(\d+))?$/.exec(text);
  const bare = !m && isIPv6(text) ? { host: text, port: 53 } : undefined;
  if (bare) return bare;
  if (!m) throw new PublishError('ERR_PUBLISH_CONFIG', `DNS server '${text}' is not HOST, HOST:PORT or [IPv6]:PORT`);
  const port = m[2] === undefined ? 53 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new PublishError('ERR_PUBLISH_CONFIG', `DNS server port '${m[2]}' is out of range`);
  return { host: m[1]!, port };
}

/**
 * Options of {@link dnsExchange}.
 * @group DNS
 * @example
 * ```ts
 * const opts: DnsExchangeOptions = { transport: 'tcp', timeoutMs: 2000 };
 * ```
 */
export interface DnsExchangeOptions {
  /** `udp` (default; TCP when the answer is truncated) or `tcp`. */
  transport?: 'udp' | 'tcp';
  /** How long to wait for the answer, in milliseconds; default 3000. */
  timeoutMs?: number;
}

const messageId = (b: Uint8Array) => (b[0]! << 8) | b[1]!;

function unreachable(server: DnsServerAddress, why: string, cause?: unknown): PublishError {
  return new PublishError('ERR_DNS_UNREACHABLE', `no answer from DNS server ${server.host}:${server.port}: ${why}`, cause === undefined ? undefined : { cause });
}

function overUdp(server: DnsServerAddress, message: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = createSocket(isIPv6(server.host) ? 'udp6' : 'udp4');
    let done = false;
    const finish = (err: Error | undefined, answer?: Uint8Array) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.close();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => finish(unreachable(server, `timed out after ${timeoutMs} ms (udp)`)), timeoutMs);
    sock.on('error', (e: NodeJS.ErrnoException) => finish(unreachable(server, e.code ?? e.message, e)));
    sock.on('message', (msg) => {
      // Answers with another ID are stale or spoofed: keep waiting.
      if (msg.length >= 12 && messageId(msg) === messageId(message)) finish(undefined, new Uint8Array(msg));
    });
    sock.connect(server.port, server.host, () => {
      sock.send(message, (e) => {
        if (e) finish(unreachable(server, (e as NodeJS.ErrnoException).code ?? e.message, e));
      });
    });
  });
}

function overTcp(server: DnsServerAddress, message: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    const sock = connect({ host: server.host, port: server.port });
    let buf = Buffer.alloc(0);
    let done = false;
    const finish = (err: Error | undefined, answer?: Uint8Array) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(answer!);
    };
    const timer = setTimeout(() => finish(unreachable(server, `timed out after ${timeoutMs} ms (tcp)`)), timeoutMs);
    sock.on('error', (e: NodeJS.ErrnoException) => finish(unreachable(server, e.code ?? e.message, e)));
    sock.on('connect', () => {
      const framed = Buffer.alloc(2 + message.length);
      framed.writeUInt16BE(message.length, 0);
      framed.set(message, 2);
      sock.write(framed);
    });
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const len = buf.readUInt16BE(0);
        const msg = new Uint8Array(buf.subarray(2, 2 + len));
        buf = buf.subarray(2 + len);
        if (msg.length >= 12 && messageId(msg) === messageId(message)) return finish(undefined, msg);
      }
    });
    sock.on('end', () => finish(unreachable(server, 'the server closed the TCP connection without an answer')));
  });
}

/**
 * Send one DNS message and return the answer with the same message ID.
 * @group DNS
 * @example
 * ```ts
 * const answer = await dnsExchange({ host: '127.0.0.1', port: 53 }, dnsPacket.encode(query), { timeoutMs: 2000 });
 * ```
 */
export async function dnsExchange(server: DnsServerAddress, message: Uint8Array, opts: DnsExchangeOptions = {}): Promise<Uint8Array> {
  const timeoutMs = opts.timeoutMs ?? 3000;
  if (opts.transport === 'tcp' || message.length > 512) return overTcp(server, message, timeoutMs);
  const answer = await overUdp(server, message, timeoutMs);
  // TC: the answer did not fit in a datagram; ask again over TCP.
  if (answer[2]! & 0x02) return overTcp(server, message, timeoutMs);
  return answer;
}
