// @module-tag peer-boringssl
// GREASE ECH to a split-mode (passthrough) name. Browsers send GREASE ECH
// whenever they hold no ECH config for a site; with `forwardGrease` the
// front end hands such hellos to the backend unchanged, and the backend
// (BoringSSL, or our backend role with acceptGrease) ignores the extension.
// Without it, they are terminated for the public name, as RFC 9849 §7 keeps
// outer-type extensions away from backends.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { EchFrontEnd } from '../src/front/front-end.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { buildHarness, runClient, startServer as startBoring } from './peers/boringssl.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';

let pki: TestPki;
let cover: ReturnType<TestPki['leaf']>;
let secret: ReturnType<TestPki['leaf']>;
// Only AES-256-GCM: BoringSSL's GREASE uses HKDF-SHA256 with AES-128-GCM or
// ChaCha20-Poly1305, so its random config_id can never select this key (the
// lookup is by config_id and suite) and every GREASE hello here is 'grease'
// (see helpers/grease.ts for the 1-in-256 case this avoids).
const keys = new EchKeySet([generateEchKey({ publicName: 'cover.example', configId: 1, cipherSuites: [{ kdfId: 1, aeadId: 2 }] })]);

beforeAll(async () => {
  await buildHarness();
  pki = makePki();
  cover = pki.leaf('ec', ['cover.example']);
  secret = pki.leaf('ec', ['secret.example']);
}, 120_000);
afterAll(() => pki?.cleanup());

async function frontEnd(port: number, forwardGrease: boolean): Promise<{ fe: EchFrontEnd; port: number }> {
  const fe = new EchFrontEnd({
    keys,
    publicName: { cert: cover.cert, key: cover.key },
    routes: [{ serverName: 'secret.example', action: { passthrough: { host: '127.0.0.1', port, forwardGrease } } }],
  });
  return { fe, port: (await fe.listen(0)).port };
}

const grease = (port: number) => runClient({ port, sni: 'secret.example', grease: true, ca: join(pki.dir, 'ca.pem'), send: 'hi' });

describe('GREASE ECH to a passthrough route', () => {
  it('forwardGrease: BoringSSL as backend gets the hello unchanged and answers for the name', async () => {
    const boring = await startBoring({ cert: secret.certPath, key: secret.keyPath });
    const { fe, port } = await frontEnd(boring.port, true);
    try {
      const r = await grease(port);
      expect(r.error).toBeNull();
      expect(r.verified).toBe(true);
      expect(r.peerCertSubject).toMatch(/secret\.example/);
      expect(r.response).toBe('hi');
      expect((await boring.result(0)).clientHelloEch).toBe('outer');
      expect(fe.metrics.value('connections', { status: 'grease' })).toBe(1);
    } finally {
      await fe.close();
      await boring.close();
    }
  });

  it('forwardGrease: our backend role with acceptGrease continues without ECH', async () => {
    const seen: TlsSocket[] = [];
    const backend = await startServer({ key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend', acceptGrease: true }) }, (s) => {
      seen.push(s);
      s.on('error', () => undefined);
      s.once('data', () => s.end(String(s.attributes['echStatus'])));
    });
    const { fe, port } = await frontEnd(backend.port, true);
    try {
      const r = await grease(port);
      expect(r.error).toBeNull();
      expect(r.peerCertSubject).toMatch(/secret\.example/);
      expect(r.response).toBe('grease');
    } finally {
      await fe.close();
      await backend.close();
    }
  });

  it('without forwardGrease the hello is terminated for the public name (the client sees the cover certificate)', async () => {
    const boring = await startBoring({ cert: secret.certPath, key: secret.keyPath });
    const { fe, port } = await frontEnd(boring.port, false);
    try {
      const r = await grease(port);
      expect(r.handshake).toBe(false);
      expect(r.verifyError ?? r.error).toBeTruthy();
      expect(boring.results).toHaveLength(0);
    } finally {
      await fe.close();
      await boring.close();
    }
  });

  it('our backend role without acceptGrease refuses an outer-type extension with illegal_parameter (RFC 9849 §7)', async () => {
    const backend = await startServer({ key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend' }) });
    const { fe, port } = await frontEnd(backend.port, true);
    try {
      const r = await grease(port);
      expect(r.handshake).toBe(false);
      expect(r.alertReceived?.code).toBe(47);
    } finally {
      await fe.close();
      await backend.close();
    }
  });
});
