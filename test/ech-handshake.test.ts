// @module-tag peer-boringssl
// ECH inside the handshake (RFC 9849 §7) against a real peer: BoringSSL as
// the ECH client, our engine with createEchHook as the client-facing server
// (shared mode). Each test checks both what the client concluded and what
// the server recorded.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { toBase64 } from '../src/wire/bytes.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import type { EchServerOptions } from '../src/tls13/config.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';
import { greaseOutcome } from './helpers/grease.js';

let pki: TestPki;
let caFile: string;
let cover: ReturnType<TestPki['leaf']>;
let secret: ReturnType<TestPki['leaf']>;
const key = generateEchKey({ publicName: 'cover.example', configId: 0x21, maximumNameLength: 32 });
const keys = new EchKeySet([key]);
const listB64 = toBase64(encodeEchConfigList([key.config]));

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  cover = pki.leaf('ec', ['cover.example']);
  secret = pki.leaf('ec', ['secret.example']);
}, 120_000);
afterAll(() => pki?.cleanup());

const socketErrors = new WeakMap<TlsSocket, Error[]>();

/** A server that answers one line with what it saw, as JSON. */
function reporter(s: TlsSocket): void {
  const errors: Error[] = [];
  socketErrors.set(s, errors);
  s.on('error', (e) => errors.push(e));
  s.once('data', () => {
    s.end(
      JSON.stringify({
        servername: s.servername,
        alpn: s.alpnProtocol,
        ...s.attributes,
      }),
    );
  });
}

async function withEchServer<T>(extra: Partial<EchServerOptions>, fn: (port: number, seen: TlsSocket[]) => Promise<T>): Promise<T> {
  const seen: TlsSocket[] = [];
  const srv = await startServer(
    {
      key: cover.key,
      cert: cover.cert,
      certificates: [{ key: secret.key, cert: secret.cert }],
      ALPNProtocols: ['h2', 'http/1.1'],
      onClientHello: createEchHook({ keys }),
      ...extra,
    },
    (s) => {
      seen.push(s);
      reporter(s);
    },
  );
  try {
    return await fn(srv.port, seen);
  } finally {
    await srv.close();
  }
}

describe('shared mode with BoringSSL as the ECH client', () => {
  it('accepts: the certificate for the inner name verifies, the server reports the inner name', async () => {
    await withEchServer({}, async (port) => {
      const r = await runClient({ port, sni: 'secret.example', echConfigList: listB64, ca: caFile, alpn: ['http/1.1'], send: 'hello\n', read: true });
      expect(r.error).toBeNull();
      expect(r.handshake).toBe(true);
      expect(r.echAccepted).toBe(true);
      expect(r.verified).toBe(true);
      expect(r.peerCertSubject).toMatch(/secret\.example/);
      expect(r.alpn).toBe('http/1.1');
      const saw = JSON.parse(r.response!);
      expect(saw).toMatchObject({ echStatus: 'accepted', servername: 'secret.example', innerServerName: 'secret.example', outerServerName: 'cover.example', alpn: 'http/1.1' });
    });
  });

  it('a stale config is rejected with retry_configs equal to the current list; the retry succeeds', async () => {
    const stale = generateEchKey({ publicName: 'cover.example', configId: 0x21 });
    const staleList = toBase64(encodeEchConfigList([stale.config]));
    await withEchServer({}, async (port, seen) => {
      const r = await runClient({ port, sni: 'secret.example', echConfigList: staleList, ca: caFile, retry: true, send: 'hello\n', read: true });
      expect(r.retried).toBe(true);
      expect(r.first!.echRejected).toBe(true);
      // BoringSSL verified the public-name certificate before reading retry_configs
      expect(r.first!.verified).toBe(true);
      expect(r.first!.peerCertSubject).toMatch(/cover\.example/);
      expect(r.firstRetryConfigs).toBe(listB64);
      expect(r.echAccepted).toBe(true);
      expect(JSON.parse(r.response!)).toMatchObject({ echStatus: 'accepted', servername: 'secret.example' });
      // the rejected connection: public name, then the client's ech_required alert
      expect(seen[0]!.attributes['echStatus']).toBe('rejected');
      expect(seen[0]!.servername).toBe('cover.example');
      expect(r.first!.alertSent?.name ?? r.first!.alertSent?.code).toBeTruthy();
    });
  });

  it('GREASE completes without ECH for the name in clear', async () => {
    await withEchServer({}, async (port) => {
      const r = await runClient({ port, sni: 'cover.example', grease: true, ca: caFile, send: 'hello\n', read: true });
      expect(r.handshake).toBe(true);
      expect(r.echAccepted).toBe(false);
      const saw = JSON.parse(r.response!);
      expect(saw).toMatchObject({ servername: 'cover.example' });
      greaseOutcome({ echStatus: saw.echStatus, configId: saw.echConfigId }, [key.config.configId]);
    });
  });

  it('with the server restricted to secp256r1, a HelloRetryRequest happens and ECH is still accepted', async () => {
    await withEchServer({ ecdhCurve: 'P-256' }, async (port) => {
      const r = await runClient({ port, sni: 'secret.example', echConfigList: listB64, ca: caFile, groups: ['X25519', 'P-256'], send: 'hello\n', read: true });
      expect(r.error).toBeNull();
      expect(r.hrr).toBe(true);
      expect(r.group).toBe('P-256');
      expect(r.echAccepted).toBe(true);
      expect(JSON.parse(r.response!)).toMatchObject({ echStatus: 'accepted', servername: 'secret.example' });
    });
  });

  it('no ECH: an ordinary handshake by the outer name', async () => {
    await withEchServer({}, async (port) => {
      const r = await runClient({ port, sni: 'secret.example', ca: caFile, send: 'hello\n', read: true });
      expect(r.handshake).toBe(true);
      expect(JSON.parse(r.response!)).toMatchObject({ echStatus: 'not-offered', servername: 'secret.example' });
    });
  });
});
