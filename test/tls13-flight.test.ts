/**
 * How the engine's output reaches the transport, counted: one write per
 * flight (ServerHello, compat change_cipher_spec and the encrypted
 * EncryptedExtensions..Finished; HelloRetryRequest and its CCS), the session
 * tickets in one record that rides with the application's answer and its
 * close_notify, an alert after a partly built flight in the same write, and
 * records handled in the call that delivers them (no promise hop).
 */
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import tls from 'node:tls';
import { describe, expect, test } from 'vitest';
import { localhostPki, memoryPair } from './tls13-helpers.js';
import { resolveServerConfig, type EchServerOptions } from '../src/tls13/config.js';
import { ClientConnection, type ClientOptions, type ClientSession } from '../src/tls13/client.js';
import { TlsSocket } from '../src/tls13/socket.js';
import { readRecord } from '../src/tls/record.js';
import { ContentType } from '../src/tls/constants.js';
import { EchError } from '../src/wire/alert.js';

const local = localhostPki();

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function config(extra: EchServerOptions = {}) {
  return resolveServerConfig({ key: local.leaf.key, cert: local.leaf.cert, ...extra });
}

function clientOpts(extra: ClientOptions = {}): ClientOptions {
  return { servername: 'localhost', ca: local.pki.caPem, ...extra };
}

/** Outer content types of the records in one transport write (all of it must be whole records). */
function recordTypes(chunk: Uint8Array): number[] {
  const types: number[] = [];
  let off = 0;
  while (off < chunk.length) {
    const r = readRecord(chunk, off);
    if (!r) throw new Error(`partial record at ${off} of ${chunk.length}`);
    types.push(r.record.type);
    off = r.next;
  }
  return types;
}

const { handshake: HS, change_cipher_spec: CCS, application_data: AD } = ContentType;

describe('engine: one send per flight', () => {
  test('ServerHello, CCS and one protected record (EncryptedExtensions..Finished) in one send; both tickets in one record', async () => {
    const cfg = config({ sessionTickets: 2 });
    const p = memoryPair(cfg, clientOpts());
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.clientErrors).toEqual([]);
    expect(p.sessions.length).toBe(2);
    // The whole first flight, then the tickets: nothing else was sent.
    expect(p.wire.server.length).toBe(2);
    expect(recordTypes(p.wire.server[0]!)).toEqual([HS, CCS, AD]);
    expect(recordTypes(p.wire.server[1]!)).toEqual([AD]);
  });

  test('HelloRetryRequest and its CCS in one send, then ServerHello..Finished in one send', async () => {
    const p = memoryPair(config({ ecdhCurve: 'P-256' }), clientOpts({ ecdhCurve: 'X25519:P-256' }));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.serverInfo?.helloRetry).toBe(true);
    expect(p.wire.server.length).toBe(3);
    expect(recordTypes(p.wire.server[0]!)).toEqual([HS, CCS]);
    // The CCS was sent once, after the HelloRetryRequest (RFC 9846 Appendix D.4).
    expect(recordTypes(p.wire.server[1]!)).toEqual([HS, AD]);
    expect(recordTypes(p.wire.server[2]!)).toEqual([AD]);
  });

  test('a failure after ServerHello: the alert, under the handshake key, follows the flight in the same send', async () => {
    const cfg = config();
    const cert = cfg.certificates.certificates[0]!;
    // The engine signs through signNow (a keyless signer's promise, rejected).
    cert.signNow = async () => {
      throw new Error('signing key unavailable');
    };
    const p = memoryPair(cfg, clientOpts());
    await p.settle();
    expect(p.serverErrors.map((e) => (e as EchError).alert)).toEqual(['internal_error']);
    expect(p.wire.server.length).toBe(1);
    expect(recordTypes(p.wire.server[0]!)).toEqual([HS, CCS, AD]);
    // The client could read it: it was protected with the key it had just derived.
    expect(p.clientErrors.map((e) => (e as EchError).alert)).toEqual(['internal_error']);
    expect(p.clientErrors[0]!.message).toMatch(/internal_error/);
  });

  test('records of a synchronous handler are handled inside receive(), without a promise hop', async () => {
    const p = memoryPair(config(), clientOpts());
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    let settled = false;
    const sends = p.wire.client.length;
    p.client.write(enc('ping'));
    // The client's record reached server.receive() synchronously in its send:
    // the server has already decrypted and delivered it.
    expect(p.wire.client.length).toBe(sends + 1);
    expect(p.received.server).toBe('ping');
    const r = p.server.receive(new Uint8Array(0)).then(() => (settled = true));
    await r;
    expect(settled).toBe(true);
  });
});

/** A raw transport in memory: counts the server's writes, hands them to `onWrite`. */
function countingTransport(onWrite: (chunk: Uint8Array) => void): { raw: Duplex; writes: Uint8Array[]; ended: Promise<void> } {
  const writes: Uint8Array[] = [];
  let ended!: () => void;
  const p = new Promise<void>((r) => (ended = r));
  const raw = new Duplex({
    read() {},
    write(chunk: Buffer, _enc, cb) {
      writes.push(new Uint8Array(chunk));
      onWrite(new Uint8Array(chunk));
      cb();
    },
    final(cb) {
      ended();
      cb();
    },
  });
  return { raw, writes, ended: p };
}

describe('TlsSocket: writes per handshake', () => {
  test('the flight in one write; tickets, the answer and close_notify in one more', async () => {
    const sessions: ClientSession[] = [];
    let answer = '';
    let peerClosed = false;
    const errors: unknown[] = [];
    // eslint-disable-next-line prefer-const
    let client: ClientConnection;
    // Filled between the server's flight and the client's handshakeComplete.
    let held: Uint8Array[] | undefined;
    const t = countingTransport((chunk) => void client.receive(chunk).catch((e) => errors.push(e)));
    const server = new TlsSocket(t.raw, config({ sessionTickets: 2 }));
    server.on('tlsClientError', (e) => errors.push(e));
    // The application answers the request in the turn it arrives, like an
    // HTTP server, and closes.
    server.on('data', () => server.end('answer'));
    client = new ClientConnection(clientOpts(), {
      // The client's CCS, Finished and request reach the server in one
      // chunk, as they do when it reads them in one go.
      send: (b) => void (held ? held.push(b) : t.raw.push(Buffer.from(b))),
      handshakeComplete: () => {
        client.write(enc('request'));
        t.raw.push(Buffer.concat(held!));
        held = undefined;
      },
      data: (b) => (answer += Buffer.from(b).toString()),
      session: (s) => sessions.push(s),
      peerClosed: () => {
        peerClosed = true;
        client.close();
      },
    });
    client.start();
    held = [];
    await t.ended;
    await new Promise((r) => setImmediate(r));
    expect(errors).toEqual([]);
    expect(answer).toBe('answer');
    expect(peerClosed).toBe(true);
    expect(sessions.length).toBe(2);
    expect(t.writes.length).toBe(2);
    expect(recordTypes(t.writes[0]!)).toEqual([HS, CCS, AD]);
    // NewSessionTicket x2 (one record), the answer, close_notify.
    expect(recordTypes(t.writes[1]!)).toEqual([AD, AD, AD]);
    t.raw.push(null);
    server.destroy();
  });

  test("Node's tls client over TCP: the flight in one write, at most three writes in all, tickets and answer arrive", async () => {
    const writes: Uint8Array[] = [];
    const cfg = config({ sessionTickets: 2 });
    const srv = net.createServer((raw) => {
      const write = raw.write.bind(raw) as (...a: unknown[]) => boolean;
      raw.write = ((chunk: Uint8Array, ...rest: unknown[]) => {
        writes.push(new Uint8Array(chunk));
        return write(chunk, ...rest);
      }) as typeof raw.write;
      const s = new TlsSocket(raw, cfg);
      s.on('data', () => s.end('answer'));
    });
    srv.listen(0, '127.0.0.1');
    await once(srv, 'listening');
    const port = (srv.address() as AddressInfo).port;
    try {
      const c = tls.connect({ port, host: '127.0.0.1', servername: 'localhost', ca: local.pki.caPem });
      let sessions = 0;
      c.on('session', () => sessions++);
      await once(c, 'secureConnect');
      c.write('request');
      let answer = '';
      c.on('data', (d: Buffer) => (answer += d.toString()));
      await once(c, 'end');
      c.end();
      expect(answer).toBe('answer');
      expect(sessions).toBe(2);
      expect(recordTypes(writes[0]!)).toEqual([HS, CCS, AD]);
      // Tickets, answer and close_notify: one write when the request came
      // with the Finished, two when it came in a later read.
      expect(writes.length).toBeLessThanOrEqual(3);
      expect(writes.flatMap(recordTypes)).toEqual([HS, CCS, AD, AD, AD, AD]);
    } finally {
      srv.close();
    }
  });
});
