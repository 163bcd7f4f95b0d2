/**
 * Hostile peers: each misbehaviour ends in the alert the RFC names, a closed
 * socket, a `tlsClientError` on the server, no unhandled error, and no timer
 * left once the server is closed. Raw bytes over TCP for pre-handshake
 * cases; our own client, made to misbehave, for the protected ones.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import net from 'node:net';
import tls from 'node:tls';
import { makePki, memoryPair, startServer, type Running, type TestPki } from './tls13-helpers.js';
import { ClientConnection, type ClientOptions, type ClientSink } from '../src/tls13/client.js';
import { resolveServerConfig } from '../src/tls13/config.js';
import { decodeClientHello, encodeClientHelloMessage, type ClientHello } from '../src/tls/client-hello.js';
import { readRecord, writeRecords, encodeHandshake } from '../src/tls/record.js';
import { ContentType, ExtensionType, HandshakeType } from '../src/tls/constants.js';
import { alertName } from '../src/wire/alert.js';

let pki: TestPki;
let leaf: { key: string; cert: string };
let srv: Running;
let timersBefore = 0;

const timers = (): number => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

beforeAll(async () => {
  pki = makePki();
  leaf = pki.leaf('ec', ['localhost']);
  timersBefore = timers();
  srv = await startServer({ key: leaf.key, cert: leaf.cert, handshakeTimeout: 3000 });
});
afterAll(() => pki.cleanup());

function clientOpts(extra: ClientOptions = {}): ClientOptions {
  return { servername: 'localhost', ca: pki.caPem, ...extra };
}

/** A valid ClientHello from our client, decoded, for mutation. */
function validHello(): ClientHello {
  let rec: Uint8Array | undefined;
  new ClientConnection(clientOpts(), { send: (b) => (rec ??= b) }).start();
  const r = readRecord(rec!, 0)!;
  return decodeClientHello(r.record.fragment.subarray(4));
}

const helloRecord = (ch: ClientHello): Uint8Array => writeRecords(ContentType.handshake, encodeClientHelloMessage(ch));

/** Write raw bytes, read until the server closes; return what came back. */
function rawExchange(port: number, bytes: Uint8Array): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('server did not close the connection'));
    }, 5000);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks));
    });
  });
}

/** The alert in the last plaintext record received. */
function plainAlert(buf: Buffer): string | undefined {
  let off = 0;
  let alert: string | undefined;
  for (;;) {
    const r = readRecord(buf, off);
    if (!r) break;
    if (r.record.type === ContentType.alert && r.record.fragment.length === 2) alert = alertName(r.record.fragment[1]!);
    off = r.next;
  }
  return alert;
}

/** Run our (possibly misbehaving) client over TCP; resolve with the error it ended with. */
function clientExchange(
  port: number,
  make: (o: ClientOptions, sink: ClientSink) => ClientConnection,
  tamper?: (b: Uint8Array, i: number) => Uint8Array,
  options: ClientOptions = {},
): Promise<{ error: Error | undefined; connected: boolean }> {
  return new Promise((resolve, reject) => {
    let error: Error | undefined;
    let connected = false;
    let i = 0;
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('server did not close the connection'));
    }, 5000);
    const c = make(clientOpts(options), {
      send: (b) => s.write(tamper ? tamper(b, i++) : b),
      handshakeComplete: () => (connected = true),
    });
    s.on('connect', () => c.start());
    s.on('data', (d: Buffer) => c.receive(d).catch((e: Error) => (error ??= e)));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      // Let the last receive settle.
      setImmediate(() => resolve({ error, connected }));
    });
  });
}

async function lastServerAlert(n: number): Promise<string | undefined> {
  for (let i = 0; i < 50 && srv.errors.length < n; i++) await new Promise((r) => setTimeout(r, 10));
  return (srv.errors[n - 1] as { alert?: string } | undefined)?.alert;
}

describe('hostile peers over TCP', () => {
  const rawCases: Array<[string, () => Uint8Array, string]> = [
    [
      'truncatedClientHello (session id length past the end)',
      () => {
        const msg = encodeClientHelloMessage(validHello());
        msg[4 + 2 + 32] = 200; // legacy_session_id length
        return writeRecords(ContentType.handshake, msg);
      },
      'decode_error',
    ],
    [
      'trailingBytesInClientHello',
      () => {
        const body = encodeClientHelloMessage(validHello()).subarray(4);
        return writeRecords(ContentType.handshake, encodeHandshake(HandshakeType.client_hello, Uint8Array.from([...body, 0])));
      },
      'decode_error',
    ],
    [
      'duplicateExtension',
      () => {
        const ch = validHello();
        ch.extensions.push({ type: ExtensionType.supported_groups, data: ch.extensions.find((e) => e.type === ExtensionType.supported_groups)!.data });
        return helloRecord(ch);
      },
      'illegal_parameter',
    ],
    [
      'noSupportedVersions (a TLS 1.2 hello)',
      () => {
        const ch = validHello();
        ch.extensions = ch.extensions.filter((e) => e.type !== ExtensionType.supported_versions);
        return helloRecord(ch);
      },
      'protocol_version',
    ],
    [
      'legacyVersionNot0303',
      () => ({ ...validHello(), legacyVersion: 0x0301 }) as ClientHello,
      'protocol_version',
    ].map((x, i) => (i === 1 ? () => helloRecord((x as () => ClientHello)()) : x)) as [string, () => Uint8Array, string],
    [
      'compressionMethodsNotNull',
      () => helloRecord({ ...validHello(), legacyCompressionMethods: Uint8Array.of(1, 0) }),
      'illegal_parameter',
    ],
    [
      'noSignatureAlgorithms',
      () => {
        const ch = validHello();
        ch.extensions = ch.extensions.filter((e) => e.type !== ExtensionType.signature_algorithms);
        return helloRecord(ch);
      },
      'missing_extension',
    ],
    [
      'noCommonCipherSuite',
      () => helloRecord({ ...validHello(), cipherSuites: [0xc02f, 0x009c] }),
      'handshake_failure',
    ],
    [
      'badKeyShare (31-byte X25519)',
      () => {
        const ch = validHello();
        const ks = ch.extensions.find((e) => e.type === ExtensionType.key_share)!;
        ks.data = Uint8Array.from([0, 35, 0, 0x1d, 0, 31, ...new Uint8Array(31).fill(9)]);
        return helloRecord(ch);
      },
      'illegal_parameter',
    ],
    [
      'wrongFirstMessage (Finished)',
      () => writeRecords(ContentType.handshake, encodeHandshake(HandshakeType.finished, new Uint8Array(32))),
      'unexpected_message',
    ],
    [
      'applicationDataFirst',
      () => writeRecords(ContentType.application_data, new Uint8Array(40)),
      'unexpected_message',
    ],
    [
      'changeCipherSpecBeforeClientHello',
      () => Uint8Array.of(20, 3, 3, 0, 1, 1),
      'unexpected_message',
    ],
    [
      'oversizedPlaintextRecord (2^14 + 1)',
      () => Uint8Array.from([22, 3, 1, 0x40, 0x01, ...new Uint8Array(16385)]),
      'record_overflow',
    ],
    [
      'notTls (an HTTP request)',
      () => new TextEncoder().encode('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      'unexpected_message',
    ],
  ];

  for (const [name, bytes, alert] of rawCases) {
    test(`${name} → ${alert}`, async () => {
      const n = srv.errors.length + 1;
      const got = await rawExchange(srv.port, bytes());
      expect(plainAlert(got)).toBe(alert);
      expect(await lastServerAlert(n)).toBe(alert);
    });
  }

  class BadFinished extends ClientConnection {
    protected override clientFinishedMessage(m: Uint8Array): Uint8Array {
      const c = m.slice();
      c[4]! ^= 0x01;
      return c;
    }
  }
  class CertificateInsteadOfFinished extends ClientConnection {
    protected override clientFinishedMessage(): Uint8Array {
      return encodeHandshake(HandshakeType.certificate, Uint8Array.of(0, 0, 0, 0));
    }
  }
  class KeyUpdateInsteadOfFinished extends ClientConnection {
    protected override clientFinishedMessage(): Uint8Array {
      return encodeHandshake(HandshakeType.key_update, Uint8Array.of(0));
    }
  }
  const plain = (o: ClientOptions, s: ClientSink): ClientConnection => new ClientConnection(o, s);

  const clientCases: Array<[string, (o: ClientOptions, s: ClientSink) => ClientConnection, ((b: Uint8Array, i: number) => Uint8Array) | undefined, string]> = [
    ['badFinished (verify_data off by one bit)', (o, s) => new BadFinished(o, s), undefined, 'decrypt_error'],
    ['outOfOrder (Certificate instead of Finished)', (o, s) => new CertificateInsteadOfFinished(o, s), undefined, 'unexpected_message'],
    ['outOfOrder (KeyUpdate before Finished)', (o, s) => new KeyUpdateInsteadOfFinished(o, s), undefined, 'unexpected_message'],
    [
      'badRecordMac (a ciphertext bit flipped in the Finished record)',
      plain,
      (b, i) => {
        // chunk 0: ClientHello, 1: CCS, 2: encrypted Finished
        if (i !== 2) return b;
        const c = b.slice();
        c[c.length - 1]! ^= 0x80;
        return c;
      },
      'bad_record_mac',
    ],
    [
      'secondClientHelloInsteadOfFinished (plaintext handshake after keys)',
      plain,
      (b, i) => (i === 2 ? helloRecord(validHello()) : b),
      'unexpected_message',
    ],
    [
      'changeCipherSpecWithTwoBytes is not dropped',
      plain,
      (b, i) => (i === 1 ? Uint8Array.of(20, 3, 3, 0, 2, 1, 1) : b),
      'unexpected_message',
    ],
  ];

  for (const [name, make, tamper, alert] of clientCases) {
    test(`${name} → ${alert}`, async () => {
      const n = srv.errors.length + 1;
      const r = await clientExchange(srv.port, make, tamper);
      // (A TLS 1.3 client counts itself connected once its Finished is out.)
      void r.connected;
      // The alert arrives protected; our client decrypts it.
      expect((r.error as { alert?: string } | undefined)?.alert).toBe(alert);
      expect(await lastServerAlert(n)).toBe(alert);
    });
  }

  test('badRecordMac after the handshake: alert, close, and the server lives on (no error listener)', async () => {
    // The echo handler of startServer pipes without an 'error' listener.
    let clientError: Error | undefined;
    await new Promise<void>((resolve, reject) => {
      const s = net.connect(srv.port, '127.0.0.1');
      const timer = setTimeout(() => reject(new Error('no close')), 5000);
      let connected = false;
      const c = new ClientConnection(clientOpts(), {
        send: (b) => {
          if (connected) {
            const t = b.slice();
            t[t.length - 1]! ^= 1;
            s.write(t);
          } else s.write(b);
        },
        handshakeComplete: () => {
          connected = true;
          setTimeout(() => c.write(new TextEncoder().encode('tampered')), 20);
        },
      });
      s.on('connect', () => c.start());
      s.on('data', (d: Buffer) => c.receive(d).catch((e: Error) => (clientError ??= e)));
      s.on('error', () => undefined);
      s.on('close', () => {
        clearTimeout(timer);
        setImmediate(resolve);
      });
    });
    expect((clientError as { alert?: string } | undefined)?.alert).toBe('bad_record_mac');
    // Still serving.
    const again = await new Promise<string>((resolve, reject) => {
      const c = tls.connect({ host: '127.0.0.1', port: srv.port, ca: pki.caPem, servername: 'localhost' }, () => {
        resolve(c.getProtocol() ?? '');
        c.end();
      });
      c.on('error', reject);
    });
    expect(again).toBe('TLSv1.3');
  });

  test('a peer that goes silent is cut off by handshakeTimeout', async () => {
    const quick = await startServer({ key: leaf.key, cert: leaf.cert, handshakeTimeout: 150 });
    const got = await rawExchange(quick.port, new Uint8Array(0));
    expect(plainAlert(got)).toBe('handshake_failure');
    await new Promise((r) => setTimeout(r, 20));
    expect((quick.errors[0] as { code?: string }).code).toBe('ERR_TIMEOUT');
    await quick.close();
  });

  test('after all of the above, server.close() resolves and no timer is left', async () => {
    await srv.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(timers()).toBeLessThanOrEqual(timersBefore);
  });
});

describe('hostile peers in memory (protected records)', () => {
  const cfg = (): ReturnType<typeof resolveServerConfig> => resolveServerConfig({ key: leaf.key, cert: leaf.cert });

  class Oversized extends ClientConnection {
    sendOversizedInner(): void {
      // 2^14 bytes of content + type + 1 padding byte = 2^14 + 2 > 2^14 + 1.
      this.sink.send(this.records.encode(ContentType.application_data, new Uint8Array(16384), 16384, 1));
    }
    sendPadded(text: string, padding: number): void {
      this.sink.send(this.records.encode(ContentType.application_data, new TextEncoder().encode(text), 16384, padding));
    }
  }

  test('record padding is removed; an over-long inner plaintext is record_overflow', async () => {
    let c: Oversized | undefined;
    const p = memoryPair(cfg(), clientOpts(), { makeClient: (o, s) => (c = new Oversized(o, s)) });
    await p.settle();
    c!.sendPadded('padded', 500);
    await p.settle();
    expect(p.received.server).toBe('padded');
    c!.sendOversizedInner();
    await p.settle();
    expect(p.serverErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['record_overflow']);
    expect(p.clientErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['record_overflow']);
  });

  test('an over-long protected record (2^14 + 257) is record_overflow', async () => {
    const p = memoryPair(cfg(), clientOpts());
    await p.settle();
    await expect(p.server.receive(Uint8Array.from([23, 3, 3, 0x41, 0x01, ...new Uint8Array(16641)]))).rejects.toMatchObject({ alert: 'record_overflow' });
  });

  test('a ClientHello after the handshake is unexpected_message', async () => {
    class Renegotiator extends ClientConnection {
      renegotiate(): void {
        this.sink.send(this.records.encode(ContentType.handshake, encodeClientHelloMessage(validHello())));
      }
    }
    let c: Renegotiator | undefined;
    const p = memoryPair(cfg(), clientOpts(), { makeClient: (o, s) => (c = new Renegotiator(o, s)) });
    await p.settle();
    c!.renegotiate();
    await p.settle();
    expect(p.serverErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['unexpected_message']);
  });

  test('a fatal alert from the peer closes without an answer', async () => {
    class Alerter extends ClientConnection {
      sendFatal(): void {
        this.sink.send(this.records.encodeAlert('handshake_failure'));
      }
    }
    let c: Alerter | undefined;
    const p = memoryPair(cfg(), clientOpts(), { makeClient: (o, s) => (c = new Alerter(o, s)) });
    await p.settle();
    const before = p.wire.server.length;
    await expect(p.server.receive(new Uint8Array(0))).resolves.toBeUndefined();
    c!.sendFatal();
    await p.settle();
    expect(p.serverErrors).toMatchObject([{ code: 'ERR_ALERT_RECEIVED', alert: 'handshake_failure' }]);
    expect(p.wire.server.length).toBe(before);
    expect(p.server.state).toBe('closed');
  });

  test('an unprotected alert during the handshake is still understood (the peer failed before its keys)', async () => {
    // Hold the client's Finished back: the server waits for it under the
    // client's handshake key.
    const p = memoryPair(cfg(), clientOpts(), { clientToServer: (b, i) => (i >= 1 ? new Uint8Array(0) : b) });
    await p.settle();
    expect(p.server.state).toBe('wait_finished');
    await expect(p.server.receive(Uint8Array.of(21, 3, 3, 0, 2, 2, 42))).rejects.toMatchObject({ code: 'ERR_ALERT_RECEIVED', alert: 'bad_certificate' });
  });

  test('an unprotected alert after the handshake is unexpected_message (RFC 9846 §5), not the peer\'s word', async () => {
    const p = memoryPair(cfg(), clientOpts());
    await p.settle();
    await expect(p.server.receive(Uint8Array.of(21, 3, 3, 0, 2, 2, 40))).rejects.toMatchObject({ code: 'ERR_UNEXPECTED_MESSAGE', alert: 'unexpected_message' });
    await expect(p.server.receive(Uint8Array.of(21, 3, 3, 0, 2, 1, 0))).rejects.toMatchObject({ alert: 'unexpected_message' });
  });
});

describe('fuzz: mutated client flights', () => {
  test('any byte flip or truncation of a real client flight ends in an alert or a handshake, never a crash', async () => {
    const fc = (await import('fast-check')).default;
    const cfg = resolveServerConfig({ key: leaf.key, cert: leaf.cert });
    // Capture a real first flight.
    let flight: Uint8Array | undefined;
    new ClientConnection(clientOpts(), { send: (b) => (flight ??= b) }).start();
    const known = new Set(Object.keys((await import('../src/wire/alert.js')).AlertDescription));
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 0, max: flight!.length - 1 }),
        fc.integer({ min: 1, max: 255 }),
        fc.integer({ min: 1, max: flight!.length }),
        async (at, xor, cut) => {
          const bytes = flight!.slice(0, cut);
          if (at < bytes.length) bytes[at]! ^= xor;
          const sent: Uint8Array[] = [];
          const { ServerConnection } = await import('../src/tls13/server-handshake.js');
          const s = new ServerConnection(cfg, { send: (b) => sent.push(b) });
          try {
            await s.receive(bytes);
          } catch (e) {
            // Only library errors, each with a real alert, and it was sent.
            expect((e as { alert?: string }).alert).toBeDefined();
            expect(known.has((e as { alert: string }).alert)).toBe(true);
            expect(sent.length).toBeGreaterThan(0);
            expect(s.state).toBe('closed');
          }
        },
      ),
      { numRuns: 150 },
    );
  });
});
