/**
 * Engine limits and strictness (issue 14): PSK identities tried per
 * ClientHello, ticket nonces and the ticket count, runs of empty records,
 * zero-length and protected change_cipher_spec records, and extension
 * responses the client did not ask for (RFC 9846 §4.2).
 */
import { describe, expect, onTestFinished, test, vi } from 'vitest';
import { localhostPki, memoryPair } from './tls13-helpers.js';
import { MAX_SESSION_TICKETS, resolveServerConfig, type EchServerOptions, type ServerConfig } from '../src/tls13/config.js';
import { ClientConnection, type ClientOptions, type ClientSession } from '../src/tls13/client.js';
import { MAX_PSK_IDENTITIES, ServerConnection } from '../src/tls13/server-handshake.js';
import { MAX_EMPTY_RECORDS, type RecordLayer } from '../src/tls13/record-layer.js';
import { KeySchedule, finishedVerifyData } from '../src/tls13/key-schedule.js';
import { Transcript } from '../src/crypto/hkdf.js';
import { decodeClientHello, encodeClientHelloMessage, type ClientHello } from '../src/tls/client-hello.js';
import { encodeOfferedPsks, pskBindersLength } from '../src/tls/extensions.js';
import {
  decodeNewSessionTicket,
  decodePreSharedKeySelected,
  decodeServerHello,
  encodeCertificate,
  encodeServerHello,
} from '../src/tls/messages.js';
import { encodeHandshake, readRecord, writeRecords } from '../src/tls/record.js';
import { ContentType, ExtensionType, HandshakeType } from '../src/tls/constants.js';
import { InvalidArgumentError } from '../src/wire/alert.js';

const local = localhostPki();

const SUITE = 'TLS_AES_128_GCM_SHA256';
const config = (extra: EchServerOptions = {}): ServerConfig => resolveServerConfig({ key: local.leaf.key, cert: local.leaf.cert, ciphers: SUITE, ...extra });
const clientOpts = (extra: ClientOptions = {}): ClientOptions => ({ servername: 'localhost', ca: local.pki.caPem, ciphers: SUITE, ...extra });
const alertOf = (errors: Error[]): Array<string | undefined> => errors.map((e) => (e as { alert?: string }).alert);
/** The server's (private) record layer: to send records the engine itself never would. */
const serverRecords = (s: ServerConnection): RecordLayer => (s as unknown as { records: RecordLayer }).records;

/** A session from a real handshake with `cfg`. */
async function realSession(cfg: ServerConfig): Promise<ClientSession> {
  const p = memoryPair(cfg, clientOpts());
  await p.settle();
  expect(p.sessions.length).toBeGreaterThan(0);
  return p.sessions[0]!;
}

/**
 * A ClientHello offering `identities` (each with obfuscated age 0); the binder
 * at `valid.index` is computed for `valid.psk`, the others are zeros.
 */
function helloWithPsks(identities: Uint8Array[], valid?: { index: number; psk: Uint8Array }): Uint8Array {
  let first: Uint8Array | undefined;
  new ClientConnection(clientOpts(), { send: (b) => (first ??= b) }).start();
  const ch: ClientHello = decodeClientHello(readRecord(first!, 0)!.record.fragment.subarray(4));
  ch.extensions.push({ type: ExtensionType.psk_key_exchange_modes, data: Uint8Array.of(1, 1) });
  const binders: Uint8Array[] = identities.map(() => new Uint8Array(32));
  const ext = (): Uint8Array => encodeOfferedPsks({ identities: identities.map((identity) => ({ identity, obfuscatedTicketAge: 0 })), binders });
  ch.extensions.push({ type: ExtensionType.pre_shared_key, data: ext() });
  if (valid) {
    const message = encodeClientHelloMessage(ch);
    const truncated = message.subarray(0, message.length - pskBindersLength(ext()));
    binders[valid.index] = finishedVerifyData('sha256', new KeySchedule('sha256', valid.psk).resumptionBinderKey(), Transcript.fromMessages('sha256', truncated).digest());
    ch.extensions[ch.extensions.length - 1] = { type: ExtensionType.pre_shared_key, data: ext() };
  }
  return encodeClientHelloMessage(ch);
}

/** Feed one ClientHello to a fresh server; return it and the ServerHello it answered with. */
async function serverAnswer(cfg: ServerConfig, hello: Uint8Array): Promise<{ server: ServerConnection; pskIndex: number | undefined }> {
  const out: Uint8Array[] = [];
  const server = new ServerConnection(cfg, { send: (b) => out.push(b) });
  await server.receive(writeRecords(ContentType.handshake, hello));
  const sh = decodeServerHello(readRecord(out[0]!, 0)!.record.fragment.subarray(4));
  const psk = sh.extensions.find((e) => e.type === ExtensionType.pre_shared_key);
  return { server, pskIndex: psk ? decodePreSharedKeySelected(psk.data) : undefined };
}

/** A bogus identity that carries a real ticket's key id, so only AES-GCM can reject it. */
function forged(ticket: Uint8Array, i: number): Uint8Array {
  const t = Uint8Array.from(ticket);
  t[t.length - 1] = t[t.length - 1]! ^ (1 + (i % 255));
  return t;
}

describe('PSK identities per ClientHello', () => {
  test(`a hello with 200 bogus identities costs at most ${MAX_PSK_IDENTITIES} ticket decryptions and gets a full handshake`, async () => {
    const cfg = config();
    const session = await realSession(cfg);
    const open = vi.spyOn(cfg.tickets!, 'open');
    const ids = Array.from({ length: 200 }, (_, i) => forged(session.ticket, i));
    const { server, pskIndex } = await serverAnswer(cfg, helloWithPsks(ids));
    expect(open.mock.calls.length).toBeLessThanOrEqual(MAX_PSK_IDENTITIES);
    expect(pskIndex).toBeUndefined();
    expect(server.state).toBe('wait_finished');
  });

  test(`only the first ${MAX_PSK_IDENTITIES} identities are tried: a real ticket at index ${MAX_PSK_IDENTITIES - 1} resumes, at index ${MAX_PSK_IDENTITIES} it is ignored`, async () => {
    const cfg = config();
    const session = await realSession(cfg);
    const at = (index: number): Uint8Array[] => Array.from({ length: index + 1 }, (_, i) => (i === index ? session.ticket : forged(session.ticket, i)));
    const last = await serverAnswer(cfg, helloWithPsks(at(MAX_PSK_IDENTITIES - 1), { index: MAX_PSK_IDENTITIES - 1, psk: session.psk }));
    expect(last.pskIndex).toBe(MAX_PSK_IDENTITIES - 1);
    const beyond = await serverAnswer(cfg, helloWithPsks(at(MAX_PSK_IDENTITIES), { index: MAX_PSK_IDENTITIES, psk: session.psk }));
    expect(beyond.pskIndex).toBeUndefined();
    expect(beyond.server.state).toBe('wait_finished');
  });
});

describe('session tickets', () => {
  test(`sessionTickets is bounded: 0..${MAX_SESSION_TICKETS} integers, anything else is InvalidArgumentError`, () => {
    for (const n of [0, 1, MAX_SESSION_TICKETS]) expect(resolveServerConfig({ key: local.leaf.key, cert: local.leaf.cert, sessionTickets: n }).ticketCount).toBe(n);
    for (const n of [MAX_SESSION_TICKETS + 1, 257, 1e9, -1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      let err: unknown;
      try {
        resolveServerConfig({ key: local.leaf.key, cert: local.leaf.cert, sessionTickets: n });
      } catch (e) {
        err = e;
      }
      expect(err, String(n)).toBeInstanceOf(InvalidArgumentError);
      expect(err).toMatchObject({ code: 'ERR_INVALID_ARGUMENT', message: expect.stringContaining('sessionTickets') });
    }
  });

  test(`${MAX_SESSION_TICKETS} tickets on one connection: 8-byte nonces, all distinct, distinct PSKs`, async () => {
    const p = memoryPair(config({ sessionTickets: MAX_SESSION_TICKETS }), clientOpts());
    // Look at the NewSessionTickets before they are protected.
    const server = p.server as unknown as { sendHandshake(m: Uint8Array[]): void };
    const nonces: string[] = [];
    const original = server.sendHandshake.bind(p.server);
    server.sendHandshake = (messages) => {
      for (const m of messages) if (m[0] === HandshakeType.new_session_ticket) nonces.push(Buffer.from(decodeNewSessionTicket(m.subarray(4)).nonce).toString('hex'));
      original(messages);
    };
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(nonces).toHaveLength(MAX_SESSION_TICKETS);
    expect(nonces.every((n) => n.length === 16)).toBe(true);
    expect(new Set(nonces).size).toBe(MAX_SESSION_TICKETS);
    expect(new Set(p.sessions.map((s) => Buffer.from(s.psk).toString('hex'))).size).toBe(MAX_SESSION_TICKETS);
  });
});

describe('empty and zero-length records', () => {
  class Sender extends ClientConnection {
    empties(n: number): void {
      for (let i = 0; i < n; i++) this.sink.send(this.records.encode(ContentType.application_data, new Uint8Array(0)));
    }
    record(type: number, content: Uint8Array): void {
      this.sink.send(this.records.encode(type, content));
    }
  }

  test(`the server takes ${MAX_EMPTY_RECORDS} empty application_data records in a row, not one more (unexpected_message)`, async () => {
    let c: Sender | undefined;
    const p = memoryPair(config(), clientOpts(), { makeClient: (o, s) => (c = new Sender(o, s)) });
    await p.settle();
    c!.empties(MAX_EMPTY_RECORDS);
    c!.write(new TextEncoder().encode('x'));
    c!.empties(MAX_EMPTY_RECORDS);
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.received.server).toBe('x');
    c!.empties(1);
    await p.settle();
    expect(alertOf(p.serverErrors)).toEqual(['unexpected_message']);
    expect(alertOf(p.clientErrors)).toEqual(['unexpected_message']);
  });

  test(`the client takes ${MAX_EMPTY_RECORDS} empty records in a row, not one more`, async () => {
    const p = memoryPair(config(), clientOpts());
    await p.settle();
    const empty = (): Uint8Array => serverRecords(p.server).encode(ContentType.application_data, new Uint8Array(0));
    for (let i = 0; i < MAX_EMPTY_RECORDS; i++) await p.client.receive(empty());
    await expect(p.client.receive(empty())).rejects.toMatchObject({ code: 'ERR_UNEXPECTED_MESSAGE', alert: 'unexpected_message' });
  });

  test('a protected zero-length alert or handshake record is unexpected_message (RFC 9846 §5.4)', async () => {
    for (const type of [ContentType.alert, ContentType.handshake]) {
      let c: Sender | undefined;
      const p = memoryPair(config(), clientOpts(), { makeClient: (o, s) => (c = new Sender(o, s)) });
      await p.settle();
      c!.record(type, new Uint8Array(0));
      await p.settle();
      expect(alertOf(p.serverErrors), String(type)).toEqual(['unexpected_message']);
    }
  });

  test('a zero-length alert record in the clear is unexpected_message', async () => {
    const server = new ServerConnection(config(), { send: () => undefined });
    await expect(server.receive(Uint8Array.of(21, 3, 3, 0, 0))).rejects.toMatchObject({ alert: 'unexpected_message' });
  });
});

describe('change_cipher_spec', () => {
  test('a protected change_cipher_spec is unexpected_message, at the server and at the client (RFC 9846 §5)', async () => {
    class Ccs extends ClientConnection {
      protectedCcs(): void {
        this.sink.send(this.records.encode(ContentType.change_cipher_spec, Uint8Array.of(1)));
      }
    }
    let c: Ccs | undefined;
    const p = memoryPair(config(), clientOpts(), { makeClient: (o, s) => (c = new Ccs(o, s)) });
    await p.settle();
    c!.protectedCcs();
    await p.settle();
    expect(alertOf(p.serverErrors)).toEqual(['unexpected_message']);

    const q = memoryPair(config(), clientOpts());
    await q.settle();
    const ccs = serverRecords(q.server).encode(ContentType.change_cipher_spec, Uint8Array.of(1));
    await expect(q.client.receive(ccs)).rejects.toMatchObject({ alert: 'unexpected_message' });
  });

  test('an unprotected change_cipher_spec after the handshake is unexpected_message at both ends', async () => {
    const p = memoryPair(config(), clientOpts());
    await p.settle();
    const ccs = Uint8Array.of(20, 3, 3, 0, 1, 1);
    await expect(p.server.receive(ccs)).rejects.toMatchObject({ alert: 'unexpected_message' });
    const q = memoryPair(config(), clientOpts());
    await q.settle();
    await expect(q.client.receive(ccs)).rejects.toMatchObject({ alert: 'unexpected_message' });
  });

  test('an unprotected alert after the handshake is unexpected_message at the client', async () => {
    const p = memoryPair(config(), clientOpts());
    await p.settle();
    await expect(p.client.receive(Uint8Array.of(21, 3, 3, 0, 2, 1, 0))).rejects.toMatchObject({ code: 'ERR_UNEXPECTED_MESSAGE', alert: 'unexpected_message' });
  });
});

describe('extension responses the client did not ask for (RFC 9846 §4.2)', () => {
  /** Rewrite the server's first chunk (the ServerHello record) with extra extensions. */
  const addToServerHello =
    (...exts: Array<{ type: number; data: Uint8Array }>) =>
    (b: Uint8Array, i: number): Uint8Array => {
      if (i !== 0) return b;
      const sh = decodeServerHello(readRecord(b, 0)!.record.fragment.subarray(4));
      sh.extensions.push(...exts);
      return writeRecords(ContentType.handshake, encodeHandshake(HandshakeType.server_hello, encodeServerHello(sh)));
    };

  test.each([
    ['pre_shared_key without a PSK offered', 'unsupported_extension', { type: ExtensionType.pre_shared_key, data: Uint8Array.of(0, 0) }],
    ['an unknown extension', 'unsupported_extension', { type: 0x1234, data: new Uint8Array(0) }],
    ['early_data (not offered, and EncryptedExtensions-only)', 'unsupported_extension', { type: ExtensionType.early_data, data: new Uint8Array(0) }],
    ['server_name (offered, but not allowed in a ServerHello)', 'illegal_parameter', { type: ExtensionType.server_name, data: new Uint8Array(0) }],
  ])('ServerHello with %s → %s', async (_name, alert, ext) => {
    const p = memoryPair(config(), clientOpts(), { serverToClient: addToServerHello(ext) });
    await p.settle();
    expect(alertOf(p.clientErrors)[0]).toBe(alert);
    expect(p.clientInfo).toBeUndefined();
  });

  test.each([
    ['early_data (not offered)', 'unsupported_extension', { type: ExtensionType.early_data, data: new Uint8Array(0) }, {}],
    ['the server_name ack without SNI offered', 'unsupported_extension', { type: ExtensionType.server_name, data: new Uint8Array(0) }, { servername: undefined, rejectUnauthorized: false }],
    ['encrypted_client_hello without ECH offered', 'unsupported_extension', { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0, 0) }, {}],
    ['supported_versions (offered, ServerHello-only)', 'illegal_parameter', { type: ExtensionType.supported_versions, data: Uint8Array.of(3, 4) }, {}],
  ])('EncryptedExtensions with %s → %s', async (_name, alert, ext, opts: ClientOptions) => {
    const cfg = config({ onClientHello: () => ({ encryptedExtensions: [ext] }) });
    const p = memoryPair(cfg, clientOpts(opts));
    await p.settle();
    expect(alertOf(p.clientErrors)).toEqual([alert]);
    expect(p.clientInfo).toBeUndefined();
  });

  test('what was offered is answered: server_name ack with SNI, retry_configs to a GREASE ECH offer', async () => {
    const ech = { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0, 0) };
    const cfg = config({ onClientHello: () => ({ encryptedExtensions: [ech] }) });
    const offerEch = (ch: ClientHello): ClientHello => ({ ...ch, extensions: [...ch.extensions, { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0) }] });
    const p = memoryPair(cfg, clientOpts({ mutateClientHello: offerEch }));
    await p.settle();
    expect(p.clientErrors).toEqual([]);
    expect(p.clientInfo?.encryptedExtensions.map((e) => e.type).sort()).toEqual([ExtensionType.server_name, ExtensionType.encrypted_client_hello].sort());
  });

  test('HelloRetryRequest with encrypted_client_hello without ECH offered → unsupported_extension; a cookie needs no offer and is echoed', async () => {
    const hrrWith = (type: number, compute: () => Uint8Array) =>
      config({ ecdhCurve: 'X25519', onClientHello: ({ retry }) => (retry ? undefined : { helloRetryRequestExtension: { type, compute } }) });
    const forceHrr = clientOpts({ ecdhCurve: 'P-256:X25519' });
    const p = memoryPair(hrrWith(ExtensionType.encrypted_client_hello, () => new Uint8Array(8)), forceHrr);
    await p.settle();
    expect(alertOf(p.clientErrors)[0]).toBe('unsupported_extension');
    expect(p.clientInfo).toBeUndefined();
    // RFC 9846 §4.2: the cookie is the exception; the client echoes it.
    const q = memoryPair(hrrWith(ExtensionType.cookie, () => Uint8Array.of(0, 6, 1, 2, 3, 4, 5, 6)), forceHrr);
    await q.settle();
    expect(q.clientErrors).toEqual([]);
    expect(q.clientInfo?.helloRetry).toBe(true);
  });

  test('a Certificate entry extension the client did not ask for (status_request) → unsupported_extension', async () => {
    const cfg = config();
    // Make the server staple an unsolicited OCSP response to its leaf (on
    // the prototype, for this test: the server answers the ClientHello
    // within memoryPair, before an instance could be patched).
    const proto = ServerConnection.prototype as unknown as { sendCertificate(c: { chain: Uint8Array[] }): void; queueHandshake(m: Uint8Array): void };
    const original = proto.sendCertificate;
    onTestFinished(() => {
      proto.sendCertificate = original;
    });
    proto.sendCertificate = function (this: typeof proto, certificate) {
      this.queueHandshake(
        encodeHandshake(
          HandshakeType.certificate,
          encodeCertificate({
            certificateRequestContext: new Uint8Array(0),
            entries: certificate.chain.map((data, i) => ({ data, extensions: i === 0 ? [{ type: ExtensionType.status_request, data: Uint8Array.of(1, 0, 0, 1, 0) }] : [] })),
          }),
        ),
      );
    };
    const p = memoryPair(cfg, clientOpts());
    await p.settle();
    expect(alertOf(p.clientErrors)).toEqual(['unsupported_extension']);
  });
});
