// @module-tag peer-boringssl
// The ECH client (src/tls13/ech-client.ts, RFC 9849 §6) against a peer
// nobody here wrote — BoringSSL as the ECH server — and against our own
// server (createEchServer + createEchHook), including servers that misbehave
// on purpose: a wrong accept confirmation, a malformed HelloRetryRequest ECH
// extension, a public-name certificate that does not match.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { toBase64 } from '../src/wire/bytes.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import type { ClientHelloHook, EchServerOptions } from '../src/tls13/config.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import type { ClientSession } from '../src/tls13/client.js';
import { ExtensionType } from '../src/tls/constants.js';
import { findExtension } from '../src/tls/client-hello.js';
import { decodeEchClientHello, decodeOfferedPsks, decodeServerName } from '../src/tls/extensions.js';
import { connectEch, EchRejectedError, type EchConnectOptions, type EchConnectResult } from '../src/tls13/ech-client.js';
import { buildHarness, marshalConfig, startServer as startBoring } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { decodeServerHello, encodeServerHello } from '../src/tls/messages.js';
import { encodeHandshake } from '../src/tls/record.js';
import { greaseOutcome } from './helpers/grease.js';

let pki: TestPki;
let cover: ReturnType<TestPki['leaf']>;
let secret: ReturnType<TestPki['leaf']>;
/** One certificate for both names: BoringSSL's server has a single certificate. */
let both: ReturnType<TestPki['leaf']>;
const key = generateEchKey({ publicName: 'cover.example', configId: 0x31, maximumNameLength: 32 });
const keys = new EchKeySet([key]);
const list = encodeEchConfigList([key.config]);
/** Same config_id and public name, another key pair: what a client with an old DNS answer has. */
const staleList = encodeEchConfigList([generateEchKey({ publicName: 'cover.example', configId: 0x31 }).config]);

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  cover = pki.leaf('ec', ['cover.example']);
  secret = pki.leaf('ec', ['secret.example']);
  both = pki.leaf('ec', ['secret.example', 'cover.example']);
}, 120_000);
afterAll(() => pki?.cleanup());

/** Write a line, read until the server closes. */
function exchange(r: EchConnectResult, line = 'hello\n'): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    r.socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    r.socket.once('error', reject);
    r.socket.once('close', () => resolve(text));
    r.socket.write(line);
  });
}

/** Write a line to an echo server, resolve once it came back. */
function echo(r: EchConnectResult, line: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    r.socket.on('data', (d: Buffer) => {
      text += d.toString('utf8');
      if (text.includes(line)) resolve(text);
    });
    r.socket.once('error', reject);
    r.socket.once('close', () => resolve(text));
    r.socket.write(line);
  });
}

async function rejectionOf(p: Promise<unknown>): Promise<EchRejectedError> {
  const e = await p.then(
    () => undefined,
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(EchRejectedError);
  return e as EchRejectedError;
}

// ------------------------------------------------------------ BoringSSL server

describe('our ECH client against a BoringSSL ECH server', () => {
  it('accepted: BoringSSL reports ECH accepted and the inner SNI', async () => {
    const m = await marshalConfig('cover.example', 7);
    const srv = await startBoring({ cert: both.certPath, key: both.keyPath, echKeys: [{ privateKey: m.privateKey, echConfig: m.echConfig }] });
    try {
      const r = await connectEch({ host: '127.0.0.1', port: srv.port, servername: 'secret.example', echConfigList: m.echConfigList, ca: pki.caPem });
      expect(r).toMatchObject({ echStatus: 'accepted', retried: false, retryConfigs: undefined, helloRetry: false, resumed: false });
      expect(r.peerCertificate?.subject).toMatch(/secret\.example/);
      expect(await echo(r, 'ping\n')).toBe('ping\n');
      r.socket.destroy();
      const s = await srv.result(0);
      expect(s.echAccepted).toBe(true);
      expect(s.sni).toBe('secret.example');
      expect(s.clientHelloEch).toBe('inner');
      expect(s.clientHelloSni).toBe('secret.example');
    } finally {
      await srv.close();
    }
  });

  it('a stale config: rejected, retry_configs equal to the server list, public-name certificate verified, ech_required sent, the retry is accepted', async () => {
    const m = await marshalConfig('cover.example', 7);
    const stale = await marshalConfig('cover.example', 7);
    const srv = await startBoring({ cert: both.certPath, key: both.keyPath, echKeys: [{ privateKey: m.privateKey, echConfig: m.echConfig }] });
    try {
      const base: EchConnectOptions = { host: '127.0.0.1', port: srv.port, servername: 'secret.example', echConfigList: stale.echConfigList, ca: pki.caPem };
      // without retry: the rejection is an error carrying the retry configs
      const e = await rejectionOf(connectEch(base));
      expect(e.code).toBe('ERR_ECH_REJECTED');
      expect(e.alert).toBe('ech_required');
      expect(e.authenticated).toBe(true);
      expect(e.peerCertificates[0]!.subject).toMatch(/secret\.example/); // the one certificate, verified for cover.example
      expect(toBase64(e.retryConfigs!)).toBe(srv.echConfigList);
      const first = await srv.result(0);
      expect(first.echAccepted).toBe(false);
      expect(first.alertReceived?.code).toBe(121); // ech_required
      // with retry: the second connection uses the retry configs and is accepted
      const r = await connectEch({ ...base, retry: true });
      expect(r).toMatchObject({ echStatus: 'accepted', retried: true });
      expect(toBase64(r.retryConfigs!)).toBe(srv.echConfigList);
      expect(await echo(r, 'ping\n')).toBe('ping\n');
      r.socket.destroy();
      const [, rejected, accepted] = await srv.waitForResults(3);
      expect(rejected!.alertReceived?.code).toBe(121);
      expect(accepted!.echAccepted).toBe(true);
      expect(accepted!.sni).toBe('secret.example');
    } finally {
      await srv.close();
    }
  });

  it('forced HelloRetryRequest (server P-256 only, client key share X25519): ECH still accepted', async () => {
    const m = await marshalConfig('cover.example', 9);
    const srv = await startBoring({ cert: both.certPath, key: both.keyPath, groups: ['P-256'], echKeys: [{ privateKey: m.privateKey, echConfig: m.echConfig }] });
    try {
      const r = await connectEch({ host: '127.0.0.1', port: srv.port, servername: 'secret.example', echConfigList: m.echConfigList, ca: pki.caPem, ecdhCurve: 'X25519:P-256' });
      expect(r).toMatchObject({ echStatus: 'accepted', helloRetry: true });
      expect(r.socket.handshake!.group).toBe(0x0017);
      expect(await echo(r, 'ping\n')).toBe('ping\n');
      r.socket.destroy();
      const s = await srv.result(0);
      expect(s).toMatchObject({ echAccepted: true, hrr: true, group: 'P-256', sni: 'secret.example' });
    } finally {
      await srv.close();
    }
  });
});

// ------------------------------------------------------------ our server

/** Errors of the server's sockets after the handshake (e.g. the client's alerts). */
const socketErrors: Error[] = [];

/** Answers one line with what the server saw, as JSON. */
function reporter(s: TlsSocket): void {
  s.on('error', (e) => socketErrors.push(e));
  s.on('tlsError', (e: Error) => socketErrors.push(e));
  s.once('data', () =>
    s.end(
      JSON.stringify({
        servername: s.servername,
        echStatus: s.echStatus,
        outerServerName: s.outerServerName ?? null,
        innerServerName: s.innerServerName ?? null,
        resumed: s.isSessionReused(),
        alpn: s.alpnProtocol,
        configId: s.attributes['echConfigId'] ?? null,
      }),
    ),
  );
}

async function withOurServer<T>(
  extra: Partial<EchServerOptions>,
  fn: (port: number, seen: { hellos: Uint8Array[]; errors: Error[] }) => Promise<T>,
): Promise<T> {
  const hellos: Uint8Array[] = [];
  const hook = (extra.onClientHello ?? createEchHook({ keys })) as ClientHelloHook;
  const srv = await startServer(
    {
      key: cover.key,
      cert: cover.cert,
      certificates: [{ key: secret.key, cert: secret.cert }],
      ALPNProtocols: ['h2', 'http/1.1'],
      ...extra,
      onClientHello: (info) => {
        hellos.push(info.message);
        return hook(info);
      },
    },
    reporter,
  );
  try {
    socketErrors.length = 0;
    return await fn(srv.port, { hellos, errors: srv.errors });
  } finally {
    await srv.close();
  }
}

const ours = (port: number, o: Partial<EchConnectOptions> = {}): EchConnectOptions => ({
  host: '127.0.0.1',
  port,
  servername: 'secret.example',
  ca: pki.caPem,
  ...o,
});

describe('our ECH client against our ECH server', () => {
  it('accepted: inner certificate, the server reports the inner and outer names', async () => {
    await withOurServer({}, async (port, seen) => {
      const r = await connectEch(ours(port, { echConfigList: list, ALPNProtocols: ['http/1.1'] }));
      expect(r).toMatchObject({ echStatus: 'accepted', retried: false, alpnProtocol: 'http/1.1' });
      expect(r.peerCertificate?.subject).toMatch(/secret\.example/);
      expect(JSON.parse(await exchange(r))).toMatchObject({ echStatus: 'accepted', servername: 'secret.example', innerServerName: 'secret.example', outerServerName: 'cover.example', alpn: 'http/1.1' });
      // only the public name travels in clear
      expect(Buffer.from(seen.hellos[0]!).includes(Buffer.from('secret.example'))).toBe(false);
    });
  });

  it('rejected (stale config): public-name certificate, retry_configs = the key set list, ech_required; the retry is accepted', async () => {
    await withOurServer({}, async (port, seen) => {
      const e = await rejectionOf(connectEch(ours(port, { echConfigList: staleList })));
      expect(e.alert).toBe('ech_required');
      expect(e.peerCertificates[0]!.subject).toMatch(/cover\.example/);
      expect(toBase64(e.retryConfigs!)).toBe(toBase64(keys.retryConfigList()!));
      // the server saw the client's ech_required alert
      await new Promise((r) => setTimeout(r, 100));
      expect([...seen.errors, ...socketErrors].map((x) => x.message).join('\n')).toMatch(/ech_required/);
      const r = await connectEch(ours(port, { echConfigList: staleList, retry: true }));
      expect(r).toMatchObject({ echStatus: 'accepted', retried: true });
      expect(toBase64(r.retryConfigs!)).toBe(toBase64(list));
      expect(JSON.parse(await exchange(r))).toMatchObject({ echStatus: 'accepted', innerServerName: 'secret.example' });
    });
  });

  it('rejected with a public-name certificate that does not match: a certificate error, no retry', async () => {
    const wrong = pki.leaf('ec', ['elsewhere.example']);
    await withOurServer({ key: wrong.key, cert: wrong.cert }, async (port) => {
      const e = await connectEch(ours(port, { echConfigList: staleList, retry: true })).then(
        () => undefined,
        (x: unknown) => x as { code: string; alert: string },
      );
      expect(e).toMatchObject({ code: 'ERR_CERTIFICATE', alert: 'bad_certificate' });
      expect(e).not.toBeInstanceOf(EchRejectedError);
    });
  });

  it('GREASE: a GREASE extension on the wire, the name in clear, the server says grease', async () => {
    await withOurServer({}, async (port, seen) => {
      const r = await connectEch(ours(port, { grease: true }));
      expect(r).toMatchObject({ echStatus: 'grease', retryConfigs: undefined });
      const saw = JSON.parse(await exchange(r));
      expect(saw).toMatchObject({ servername: 'secret.example' });
      greaseOutcome(saw, [key.config.configId]);
      const first = seen.hellos[0]!;
      const { decodeClientHello } = await import('../src/tls/client-hello.js');
      const ch = decodeClientHello(first.subarray(4));
      expect(decodeEchClientHello(findExtension(ch.extensions, ExtensionType.encrypted_client_hello)!.data).type).toBe('outer');
      expect(decodeServerName(findExtension(ch.extensions, ExtensionType.server_name)!.data)).toBe('secret.example');
    });
  });

  it('not offered: no ECH extension at all', async () => {
    await withOurServer({}, async (port, seen) => {
      const r = await connectEch(ours(port));
      expect(r.echStatus).toBe('not-offered');
      expect(JSON.parse(await exchange(r))).toMatchObject({ echStatus: 'not-offered', servername: 'secret.example' });
      const { decodeClientHello } = await import('../src/tls/client-hello.js');
      expect(findExtension(decodeClientHello(seen.hellos[0]!.subarray(4)).extensions, ExtensionType.encrypted_client_hello)).toBeUndefined();
    });
  });

  it('HelloRetryRequest (server P-256 only): the second hello reuses the HPKE context, ECH accepted', async () => {
    await withOurServer({ ecdhCurve: 'P-256' }, async (port, seen) => {
      const r = await connectEch(ours(port, { echConfigList: list }));
      expect(r).toMatchObject({ echStatus: 'accepted', helloRetry: true });
      expect(JSON.parse(await exchange(r))).toMatchObject({ echStatus: 'accepted', innerServerName: 'secret.example' });
      expect(seen.hellos).toHaveLength(2);
      const { decodeClientHello } = await import('../src/tls/client-hello.js');
      const ech2 = decodeEchClientHello(findExtension(decodeClientHello(seen.hellos[1]!.subarray(4)).extensions, ExtensionType.encrypted_client_hello)!.data);
      expect(ech2.type === 'outer' && ech2.enc.length).toBe(0);
    });
  });

  it('HelloRetryRequest with a stale config: rejected at the HRR, the handshake finishes on the outer hellos', async () => {
    await withOurServer({ ecdhCurve: 'P-256' }, async (port) => {
      const e = await rejectionOf(connectEch(ours(port, { echConfigList: staleList })));
      expect(toBase64(e.retryConfigs!)).toBe(toBase64(list));
      expect(e.peerCertificates[0]!.subject).toMatch(/cover\.example/);
      const r = await connectEch(ours(port, { echConfigList: staleList, retry: true }));
      expect(r).toMatchObject({ echStatus: 'accepted', retried: true, helloRetry: true });
      r.socket.destroy();
    });
  });

  it('PSK resumption through ECH: the ticket goes in the inner hello, the outer carries a GREASE pre_shared_key', async () => {
    await withOurServer({}, async (port, seen) => {
      const sessions: ClientSession[] = [];
      const r1 = await connectEch(ours(port, { echConfigList: list }));
      r1.socket.on('session', (s: ClientSession) => sessions.push(s));
      await exchange(r1);
      expect(sessions.length).toBeGreaterThan(0);
      const session = sessions[0]!;
      const r2 = await connectEch(ours(port, { echConfigList: list, session }));
      expect(r2).toMatchObject({ echStatus: 'accepted', resumed: true, peerCertificate: undefined });
      expect(JSON.parse(await exchange(r2))).toMatchObject({ echStatus: 'accepted', resumed: true, innerServerName: 'secret.example' });
      // the outer hello's pre_shared_key: same shape, random identity
      const { decodeClientHello } = await import('../src/tls/client-hello.js');
      const outer = decodeClientHello(seen.hellos[1]!.subarray(4));
      const exts = outer.extensions;
      expect(exts[exts.length - 1]!.type).toBe(ExtensionType.pre_shared_key);
      const psk = decodeOfferedPsks(exts[exts.length - 1]!.data);
      expect(psk.identities).toHaveLength(1);
      expect(psk.identities[0]!.identity.length).toBe(session.ticket.length);
      expect(Buffer.from(psk.identities[0]!.identity).equals(Buffer.from(session.ticket))).toBe(false);
      expect(findExtension(exts, ExtensionType.psk_key_exchange_modes)).toBeDefined();
      // the outer's GREASE PSK alone resumes nothing: a server that cannot
      // decrypt (stale config) handshakes on the outer hello without a PSK,
      // so the rejection is a normal one and not illegal_parameter
      const e = await rejectionOf(connectEch(ours(port, { echConfigList: staleList, session })));
      expect(e.retryConfigs).toBeDefined();
    });
  });

  it('PSK resumption through ECH after a HelloRetryRequest: the second inner hello carries a fresh binder', async () => {
    await withOurServer({ ecdhCurve: 'P-256' }, async (port) => {
      const sessions: ClientSession[] = [];
      const r1 = await connectEch(ours(port, { echConfigList: list }));
      r1.socket.on('session', (s: ClientSession) => sessions.push(s));
      await exchange(r1);
      const r2 = await connectEch(ours(port, { echConfigList: list, session: sessions[0]! }));
      expect(r2).toMatchObject({ echStatus: 'accepted', resumed: true, helloRetry: true });
      expect(JSON.parse(await exchange(r2))).toMatchObject({ echStatus: 'accepted', resumed: true, innerServerName: 'secret.example' });
    });
  });

  it('a server that rejects ECH but selects a PSK → illegal_parameter (§6.1.2)', async () => {
    await withOurServer({}, async (port) => {
      const sessions: ClientSession[] = [];
      const r1 = await connectEch(ours(port, { echConfigList: list }));
      r1.socket.on('session', (s: ClientSession) => sessions.push(s));
      await exchange(r1);
      // A relay that adds pre_shared_key (selected_identity 0) to the
      // ServerHello of a connection the server handshakes on the outer hello.
      const open = new Set<Socket>();
      const relay: Server = createServer((c) => {
        const up = netConnect(port, '127.0.0.1');
        open.add(c).add(up);
        c.on('error', () => up.destroy());
        up.on('error', () => c.destroy());
        c.pipe(up);
        let first = true;
        up.on('data', (d: Buffer) => {
          if (!first) return void c.write(d);
          first = false;
          const len = d.readUInt16BE(3);
          const msg = d.subarray(5, 5 + len);
          const sh = decodeServerHello(msg.subarray(4));
          sh.extensions.push({ type: ExtensionType.pre_shared_key, data: Uint8Array.of(0, 0) });
          const out = encodeHandshake(2, encodeServerHello(sh));
          const header = Buffer.from([22, 3, 3, out.length >> 8, out.length & 0xff]);
          c.write(Buffer.concat([header, out, d.subarray(5 + len)]));
        });
      });
      await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
      try {
        const rport = (relay.address() as { port: number }).port;
        const e = await connectEch(ours(rport, { echConfigList: staleList, session: sessions[0]! })).then(
          () => undefined,
          (x: unknown) => x as { alert: string; message: string },
        );
        expect(e).toMatchObject({ alert: 'illegal_parameter' });
        expect(e!.message).toMatch(/rejected ECH/);
      } finally {
        for (const x of open) x.destroy();
        await new Promise((r) => relay.close(r));
      }
    });
  });

  it('a wrong accept confirmation on a handshake run on the outer hello is a rejection', async () => {
    // A client-facing server that cannot decrypt, but writes 8 bytes of its
    // own into ServerHello.random: the client must not believe it.
    const hook = createEchHook({ keys });
    const liar: ClientHelloHook = async (info) => {
      const r = await hook(info);
      return { ...(r ?? {}), serverHelloConfirmation: () => new Uint8Array(8).fill(0x5a) };
    };
    await withOurServer({ onClientHello: liar }, async (port) => {
      const e = await rejectionOf(connectEch(ours(port, { echConfigList: staleList })));
      expect(e.peerCertificates[0]!.subject).toMatch(/cover\.example/);
    });
  });

  it('a wrong accept confirmation on the inner handshake is never reported as accepted', async () => {
    const hook = createEchHook({ keys });
    const wrong: ClientHelloHook = async (info) => {
      const r = await hook(info);
      return r && r.serverHelloConfirmation ? { ...r, serverHelloConfirmation: (th, h) => r.serverHelloConfirmation!(th, h).map((b) => b ^ 1) } : r;
    };
    await withOurServer({ onClientHello: wrong }, async (port) => {
      const e = await connectEch(ours(port, { echConfigList: list })).then(
        () => undefined,
        (x: unknown) => x as { code: string; alert: string },
      );
      // The client follows the outer transcript, the server the inner one:
      // their handshake keys differ, so the first encrypted record fails.
      expect(e).toBeDefined();
      expect(e!.alert).toBe('bad_record_mac');
    });
  });

  it('a HelloRetryRequest ECH extension that is not 8 bytes → decode_error', async () => {
    const hook = createEchHook({ keys });
    const bad: ClientHelloHook = async (info) => {
      const r = await hook(info);
      return { ...(r ?? {}), helloRetryRequestExtension: { type: ExtensionType.encrypted_client_hello, length: 7, compute: () => new Uint8Array(7) } };
    };
    await withOurServer({ onClientHello: bad, ecdhCurve: 'P-256' }, async (port, seen) => {
      const e = await connectEch(ours(port, { echConfigList: list })).then(
        () => undefined,
        (x: unknown) => x as { code: string; alert: string },
      );
      expect(e).toMatchObject({ code: 'ERR_DECODE', alert: 'decode_error' });
      await new Promise((r) => setTimeout(r, 100));
      expect(seen.errors.map((x) => x.message).join('\n')).toMatch(/decode_error/);
    });
  });
});
