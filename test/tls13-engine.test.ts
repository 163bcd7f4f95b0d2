/**
 * The transport-free engine in memory: our client against our server —
 * suites, groups, HRR, PSK resumption (also after HRR), KeyUpdate both ways,
 * close_notify, the key schedule against RFC 8448 vectors, and the ECH seams
 * (ClientHello replacement, EncryptedExtensions extras, ServerHello.random
 * and HelloRetryRequest accept confirmations).
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { makePki, memoryPair, type TestPki } from './tls13-helpers.js';
import { resolveServerConfig, type ClientHelloHookInfo, type EchServerOptions } from '../src/tls13/config.js';
import { ClientConnection, type ClientOptions } from '../src/tls13/client.js';
import { hkdfExpandLabel, hkdfExtract, hashBytes, messageHash, deriveSecret, type HashName } from '../src/crypto/hkdf.js';
import { KeySchedule, trafficKeys, finishedVerifyData } from '../src/tls13/key-schedule.js';
import { suiteById } from '../src/tls13/suites.js';
import { readRecord, encodeHandshake } from '../src/tls/record.js';
import { decodeServerHello, encodeServerHello, isHelloRetryRequest } from '../src/tls/messages.js';
import { decodeClientHello, encodeClientHello, findExtension, type ClientHello } from '../src/tls/client-hello.js';
import {
  encodeServerName,
  decodeServerName,
  encodeKeyShareClient,
  decodeKeyShareClient,
  encodeSupportedGroups,
  decodeSupportedGroups,
} from '../src/tls/extensions.js';
import { ExtensionType, HandshakeType, NamedGroup } from '../src/tls/constants.js';
import { fromHex, toHex } from '../src/wire/bytes.js';

let pki: TestPki;
let ecKey: { key: string; cert: string };
beforeAll(() => {
  pki = makePki();
  ecKey = pki.leaf('ec', ['localhost', 'public.test', 'secret.test']);
});
afterAll(() => pki.cleanup());

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

function config(extra: EchServerOptions = {}) {
  return resolveServerConfig({ key: ecKey.key, cert: ecKey.cert, ...extra });
}

function clientOpts(extra: ClientOptions = {}): ClientOptions {
  return { servername: 'localhost', ca: pki.caPem, ...extra };
}

describe('key schedule', () => {
  test('RFC 8448 §3 simple 1-RTT handshake secrets', () => {
    // RFC 8448 §3: shared secret and Transcript-Hash(ClientHello, ServerHello).
    const shared = fromHex('8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d');
    const chSh = fromHex('860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8');
    const ks = new KeySchedule('sha256');
    expect(toHex(ks.earlySecret)).toBe('33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a');
    const hs = ks.handshakeSecrets(shared, chSh);
    expect(toHex(hs.client)).toBe('b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21');
    expect(toHex(hs.server)).toBe('b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38');
    const suite = suiteById(0x1301)!;
    const k = trafficKeys(suite, hs.server);
    expect(toHex(k.key)).toBe('3fce516009c21727d0f2e4e86ee403bc');
    expect(toHex(k.iv)).toBe('5d313eb2671276ee13000b30');
  });

  test('HKDF-Expand-Label matches a hand-built HkdfLabel', () => {
    const secret = hashBytes('sha256', enc('x'));
    const ctx = hashBytes('sha256', enc('ctx'));
    const manual = deriveSecret('sha256', secret, 'c hs traffic', ctx);
    expect(manual).toEqual(hkdfExpandLabel('sha256', secret, 'c hs traffic', ctx, 32));
    expect(finishedVerifyData('sha384', new Uint8Array(48), new Uint8Array(48)).length).toBe(48);
  });
});

describe('handshake in memory', () => {
  for (const suite of ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']) {
    for (const curve of ['X25519', 'P-256']) {
      test(`${suite} over ${curve}: data both ways, KeyUpdate both ways, close_notify`, async () => {
        const p = memoryPair(config({ ecdhCurve: curve }), clientOpts({ ciphers: suite, ecdhCurve: curve }));
        await p.settle();
        expect(p.clientErrors).toEqual([]);
        expect(p.serverErrors).toEqual([]);
        expect(p.serverInfo?.suite.name).toBe(suite);
        expect(p.clientInfo?.suite.name).toBe(suite);
        expect(p.serverInfo?.helloRetry).toBe(false);
        p.client.write(enc('hello server'));
        p.server.write(enc('hello client'));
        await p.settle();
        p.server.keyUpdate(true);
        p.client.write(enc(' after update'));
        await p.settle();
        p.client.keyUpdate(false);
        p.server.write(enc(' again'));
        p.client.write(enc(' and again'));
        await p.settle();
        expect(p.received.server).toBe('hello server after update and again');
        expect(p.received.client).toBe('hello client again');
        expect(p.server.keyUpdates).toEqual({ sent: 1, received: 2 });
        let closed = false;
        p.client.close();
        await p.settle();
        expect(p.server.state).toBe('connected');
        expect(() => p.server.write(enc('still open'))).not.toThrow();
        p.server.close();
        await p.settle();
        closed = p.clientErrors.length === 0;
        expect(closed).toBe(true);
        expect(p.serverErrors).toEqual([]);
      });
    }
  }

  test('HelloRetryRequest, then PSK resumption whose binder covers message_hash || HRR', async () => {
    const cfg = config({ ecdhCurve: 'P-256' });
    const p1 = memoryPair(cfg, clientOpts({ ecdhCurve: 'X25519:P-256' }));
    await p1.settle();
    expect(p1.serverErrors).toEqual([]);
    expect(p1.serverInfo?.helloRetry).toBe(true);
    expect(p1.clientInfo?.group).toBe(NamedGroup.secp256r1);
    expect(p1.sessions.length).toBe(1);
    const p2 = memoryPair(cfg, clientOpts({ ecdhCurve: 'X25519:P-256', session: p1.sessions[0]! }));
    await p2.settle();
    expect(p2.serverErrors).toEqual([]);
    expect(p2.serverInfo).toMatchObject({ resumed: true, helloRetry: true });
    expect(p2.clientInfo?.resumed).toBe(true);
    expect(p2.clientInfo?.peerCertificates).toEqual([]);
    p2.client.write(enc('resumed'));
    await p2.settle();
    expect(p2.received.server).toBe('resumed');
  });

  test('a SHA-256 ticket steers the suite choice to a SHA-256 suite so it can resume', async () => {
    const cfg = config();
    const p1 = memoryPair(cfg, clientOpts({ ciphers: 'TLS_AES_128_GCM_SHA256' }));
    await p1.settle();
    // The client now prefers a SHA-384 suite but also offers SHA-256 ones.
    const p2 = memoryPair(cfg, clientOpts({ ciphers: 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256', session: p1.sessions[0]! }));
    await p2.settle();
    expect(p2.serverErrors).toEqual([]);
    expect(p2.serverInfo).toMatchObject({ resumed: true });
    expect(p2.serverInfo?.suite.name).toBe('TLS_CHACHA20_POLY1305_SHA256');
    // Without a ticket the client's first choice wins.
    const p3 = memoryPair(cfg, clientOpts({ ciphers: 'TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256' }));
    await p3.settle();
    expect(p3.serverInfo?.suite.name).toBe('TLS_AES_256_GCM_SHA384');
  });

  test('a ticket from another server (other ticket keys) falls back to a full handshake', async () => {
    const p1 = memoryPair(config(), clientOpts());
    await p1.settle();
    const p2 = memoryPair(config(), clientOpts({ session: p1.sessions[0]! }));
    await p2.settle();
    expect(p2.serverErrors).toEqual([]);
    expect(p2.serverInfo?.resumed).toBe(false);
  });

  test('servers sharing ticketKeys resume each other\'s tickets', async () => {
    const shared = new Uint8Array(48).fill(42);
    const p1 = memoryPair(config({ ticketKeys: shared }), clientOpts());
    await p1.settle();
    const p2 = memoryPair(config({ ticketKeys: shared }), clientOpts({ session: p1.sessions[0]! }));
    await p2.settle();
    expect(p2.serverErrors).toEqual([]);
    expect(p2.serverInfo?.resumed).toBe(true);
  });

  test('a wrong PSK binder is decrypt_error', async () => {
    const cfg = config();
    const p1 = memoryPair(cfg, clientOpts());
    await p1.settle();
    class BadBinder extends ClientConnection {
      protected override pskBinder(b: Uint8Array): Uint8Array {
        const c = b.slice();
        c[0]! ^= 1;
        return c;
      }
    }
    const p2 = memoryPair(cfg, clientOpts({ session: p1.sessions[0]! }), { makeClient: (o, s) => new BadBinder(o, s) });
    await p2.settle();
    expect(p2.serverErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['decrypt_error']);
    expect(p2.clientErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['decrypt_error']);
  });

  test('early_data offered is ignored (not accepted) and the handshake completes', async () => {
    const p = memoryPair(
      config(),
      clientOpts({
        mutateClientHello: (ch) => {
          ch.extensions.push({ type: ExtensionType.early_data, data: new Uint8Array(0) });
        },
      }),
    );
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(findExtension(p.clientInfo!.encryptedExtensions, ExtensionType.early_data)).toBeUndefined();
  });

  test('a hybrid X25519MLKEM768 share is skipped cleanly by a server not configured for it', async () => {
    const p = memoryPair(
      config({ ecdhCurve: 'X25519:P-256' }),
      clientOpts({
        mutateClientHello: (ch) => {
          // Prepend a (fake-sized) hybrid share and group, as Chromium does.
          const ks = findExtension(ch.extensions, ExtensionType.key_share)!;
          const sg = findExtension(ch.extensions, ExtensionType.supported_groups)!;
          const hybrid = { group: NamedGroup.X25519MLKEM768, keyExchange: new Uint8Array(1216).fill(7) };
          ks.data = encodeKeyShareClient([hybrid, ...decodeKeyShareClient(ks.data)]);
          sg.data = encodeSupportedGroups([NamedGroup.X25519MLKEM768, ...decodeSupportedGroups(sg.data)]);
        },
      }),
    );
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.serverInfo?.group).toBe(NamedGroup.x25519);
    expect(p.serverInfo?.helloRetry).toBe(false);
  });
});

describe('ECH seams', () => {
  const INNER_EXT = 0xff99; // test-only: the outer hello carries the inner one in clear

  /** RFC 9849 §7.2: accept_confirmation. */
  function confirmation(hash: HashName, innerRandom: Uint8Array, th: Uint8Array, label: string): Uint8Array {
    return hkdfExpandLabel(hash, hkdfExtract(hash, new Uint8Array(0), innerRandom), label, th, 8);
  }

  /** A client whose wire ClientHello is an "outer" one wrapping the real (inner) one. */
  function echClient(sent: Uint8Array[], extra: ClientOptions = {}): ClientOptions {
    return clientOpts({
      servername: 'secret.test',
      ...extra,
      wireClientHello: (inner) => {
        sent.push(inner);
        const outer = decodeClientHello(inner.subarray(4));
        outer.random = new Uint8Array(32).fill(0xaa);
        outer.extensions = outer.extensions
          .filter((e) => e.type !== ExtensionType.pre_shared_key)
          .map((e) => (e.type === ExtensionType.server_name ? { type: e.type, data: encodeServerName('public.test') } : e));
        outer.extensions.push({ type: INNER_EXT, data: inner.subarray(4) });
        // As a real ClientHelloOuter, it offers ECH: the server may answer
        // with encrypted_client_hello in the HRR or EncryptedExtensions
        // (RFC 9846 §4.2: a client rejects responses it did not ask for).
        outer.extensions.push({ type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0) });
        return encodeHandshake(HandshakeType.client_hello, encodeClientHello(outer));
      },
    });
  }

  function hook(calls: ClientHelloHookInfo[]) {
    return (info: ClientHelloHookInfo) => {
      calls.push(info);
      info.state.count = ((info.state.count as number | undefined) ?? 0) + 1;
      const inner = findExtension(info.clientHello.extensions, INNER_EXT);
      if (!inner) return { encryptedExtensions: [{ type: 0xfe0d, data: enc('retry-configs') }], attributes: { echAccepted: false } };
      const innerRandom = inner.data.subarray(2, 34);
      return {
        clientHello: inner.data,
        attributes: { echAccepted: true, outerServerName: decodeServerName(findExtension(info.clientHello.extensions, 0)!.data) },
        serverHelloConfirmation: (th: Uint8Array, h: HashName) => confirmation(h, innerRandom, th, 'ech accept confirmation'),
        helloRetryRequestExtension: {
          type: 0xfe0d,
          compute: (th: Uint8Array, h: HashName) => confirmation(h, innerRandom, th, 'hrr ech accept confirmation'),
        },
      };
    };
  }

  test('the hook replaces the ClientHello; ServerHello.random carries the accept confirmation', async () => {
    const calls: ClientHelloHookInfo[] = [];
    const sent: Uint8Array[] = [];
    const p = memoryPair(config({ onClientHello: hook(calls) }), echClient(sent));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.clientErrors).toEqual([]);
    expect(calls.map((c) => c.retry)).toEqual([false]);
    expect(decodeServerName(findExtension(calls[0]!.clientHello.extensions, 0)!.data)).toBe('public.test');
    // The handshake ran on the inner hello.
    expect(p.serverInfo?.servername).toBe('secret.test');
    expect(p.serverInfo?.attributes).toEqual({ echAccepted: true, outerServerName: 'public.test' });
    // Check the confirmation independently from the wire bytes.
    const rec = readRecord(p.wire.server[0]!, 0)!;
    const shMsg = rec.record.fragment.slice();
    const sh = decodeServerHello(shMsg.subarray(4));
    expect(isHelloRetryRequest(sh)).toBe(false);
    const hash = suiteById(sh.cipherSuite)!.hash;
    const zeroed = encodeHandshake(HandshakeType.server_hello, encodeServerHello({ ...sh, random: Uint8Array.from([...sh.random.subarray(0, 24), 0, 0, 0, 0, 0, 0, 0, 0]) }));
    const inner = sent[0]!;
    const want = confirmation(hash, inner.subarray(6, 38), hashBytes(hash, inner, zeroed), 'ech accept confirmation');
    expect(toHex(sh.random.subarray(24))).toBe(toHex(want));
  });

  test('rejection path: extra EncryptedExtensions reach the client', async () => {
    const calls: ClientHelloHookInfo[] = [];
    // The client offers ECH (a GREASE-like extension): retry_configs answer it.
    const offerEch = (ch: ClientHello): ClientHello => ({ ...ch, extensions: [...ch.extensions, { type: ExtensionType.encrypted_client_hello, data: Uint8Array.of(0) }] });
    const p = memoryPair(config({ onClientHello: hook(calls) }), clientOpts({ servername: 'public.test', mutateClientHello: offerEch }));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    const ext = findExtension(p.clientInfo!.encryptedExtensions, 0xfe0d);
    expect(new TextDecoder().decode(ext!.data)).toBe('retry-configs');
    expect(p.serverInfo?.attributes).toEqual({ echAccepted: false });
  });

  test('after HelloRetryRequest the second ClientHello goes through the hook; HRR carries the confirmation', async () => {
    const calls: ClientHelloHookInfo[] = [];
    const sent: Uint8Array[] = [];
    const p = memoryPair(config({ onClientHello: hook(calls), ecdhCurve: 'P-256' }), echClient(sent, { ecdhCurve: 'X25519:P-256' }));
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.clientErrors).toEqual([]);
    expect(calls.map((c) => c.retry)).toEqual([false, true]);
    expect(calls[0]!.state).toBe(calls[1]!.state);
    expect(calls[1]!.state.count).toBe(2);
    expect(p.serverInfo).toMatchObject({ servername: 'secret.test', helloRetry: true });
    const hrrMsg = readRecord(p.wire.server[0]!, 0)!.record.fragment.slice();
    const hrr = decodeServerHello(hrrMsg.subarray(4));
    expect(isHelloRetryRequest(hrr)).toBe(true);
    const hash = suiteById(hrr.cipherSuite)!.hash;
    const ext = findExtension(hrr.extensions, 0xfe0d)!;
    const zeroed = encodeHandshake(
      HandshakeType.server_hello,
      encodeServerHello({ ...hrr, extensions: hrr.extensions.map((e) => (e.type === 0xfe0d ? { type: e.type, data: new Uint8Array(8) } : e)) }),
    );
    const inner1 = sent[0]!;
    const want = confirmation(hash, inner1.subarray(6, 38), hashBytes(hash, messageHash(hash, inner1), zeroed), 'hrr ech accept confirmation');
    expect(toHex(ext.data)).toBe(toHex(want));
  });

  test('an abort while the hook is pending: only the alert leaves, nothing after it', async () => {
    let release: () => void = () => undefined;
    const gate = new Promise<void>((r) => (release = r));
    const p = memoryPair(
      config({
        onClientHello: async () => {
          await gate;
          return undefined;
        },
      }),
      clientOpts(),
    );
    await new Promise((r) => setTimeout(r, 10));
    const { EchError } = await import('../src/wire/alert.js');
    p.server.abort(new EchError('ERR_TIMEOUT', 'handshake_failure', 'timed out'));
    release();
    await p.settle();
    expect(p.wire.server.length).toBe(1);
    expect(readRecord(p.wire.server[0]!, 0)!.record.type).toBe(21);
    expect(p.serverErrors.map((e) => (e as { code?: string }).code)).toEqual(['ERR_TIMEOUT']);
    expect(p.clientErrors.map((e) => (e as { alert?: string }).alert)).toEqual(['handshake_failure']);
  });

  test('receiveClientHello: the engine starts from an already-read ClientHello', async () => {
    let first: Uint8Array | undefined;
    const p = memoryPair(config(), clientOpts(), {
      clientToServer: (b, i) => {
        if (i === 0) {
          first = b;
          return new Uint8Array(0); // withheld; handed in below
        }
        return b;
      },
    });
    const rec = readRecord(first!, 0)!;
    await p.server.receiveClientHello(rec.record.fragment.slice());
    await p.settle();
    expect(p.serverErrors).toEqual([]);
    expect(p.clientInfo).toBeDefined();
    expect(p.serverInfo?.servername).toBe('localhost');
  });
});
