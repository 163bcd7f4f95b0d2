// @module-tag peer-boringssl
// @module-tag peer-openssl
/**
 * Self-test of the BoringSSL peer harness: BoringSSL client against BoringSSL
 * server, with ECH. These prove the harness reports what BoringSSL did, so
 * later tests that point it at our server can trust its verdicts.
 *
 * A missing BoringSSL is a failure here (buildHarness throws), never a skip.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildHarness, marshalConfig, runClient, startServer, type BoringServer } from './peers/boringssl.js';
import { makeTestPki, type TestPki } from './peers/certs.js';

const PUBLIC_NAME = 'public.test';
const INNER_NAME = 'private.test';

/** Independent parse of one ECHConfig (RFC 9849 §4), strict about lengths. */
function parseEchConfig(buf: Uint8Array): {
  version: number;
  configId: number;
  kemId: number;
  publicKey: Uint8Array;
  suites: Array<[number, number]>;
  maxNameLength: number;
  publicName: string;
  extensionsLength: number;
} {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let o = 0;
  const need = (n: number): void => {
    if (o + n > buf.length) throw new Error(`truncated at ${o} (+${n}) of ${buf.length}`);
  };
  const u8 = (): number => (need(1), dv.getUint8(o++));
  const u16 = (): number => {
    need(2);
    const v = dv.getUint16(o);
    o += 2;
    return v;
  };
  const bytes = (n: number): Uint8Array => {
    need(n);
    const v = buf.subarray(o, o + n);
    o += n;
    return v;
  };
  const version = u16();
  const length = u16();
  if (length !== buf.length - 4) throw new Error(`ECHConfig length ${length} != ${buf.length - 4}`);
  const configId = u8();
  const kemId = u16();
  const publicKey = bytes(u16());
  const suitesLen = u16();
  if (suitesLen % 4 !== 0 || suitesLen === 0) throw new Error(`bad cipher_suites length ${suitesLen}`);
  const suites: Array<[number, number]> = [];
  for (let end = o + suitesLen; o < end; ) suites.push([u16(), u16()]);
  const maxNameLength = u8();
  const publicName = Buffer.from(bytes(u8())).toString('latin1');
  const extensionsLength = u16();
  bytes(extensionsLength);
  if (o !== buf.length) throw new Error(`${buf.length - o} trailing bytes`);
  return { version, configId, kemId, publicKey, suites, maxNameLength, publicName, extensionsLength };
}

const execFileP = promisify(execFile);

let pki: TestPki;

beforeAll(async () => {
  await buildHarness();
  pki = await makeTestPki([PUBLIC_NAME, INNER_NAME]);
});

afterAll(async () => {
  await pki?.cleanup();
});

describe('BoringSSL harness: marshal-config', () => {
  it('emits one ECHConfig and a consistent ECHConfigList for a fresh X25519 key', async () => {
    const m = await marshalConfig(PUBLIC_NAME, 42);
    expect(m.privateKey.length).toBe(32);
    expect(m.publicKey.length).toBe(32);
    expect(m.echConfigList.readUInt16BE(0)).toBe(m.echConfigList.length - 2);
    expect(m.echConfigList.subarray(2)).toEqual(m.echConfig);

    const c = parseEchConfig(m.echConfig);
    expect(c.version).toBe(0xfe0d);
    expect(c.configId).toBe(42);
    expect(c.kemId).toBe(0x0020); // DHKEM(X25519, HKDF-SHA256)
    expect(Buffer.from(c.publicKey)).toEqual(m.publicKey);
    expect(c.suites.length).toBeGreaterThan(0);
    for (const [kdf] of c.suites) expect(kdf).toBe(0x0001); // HKDF-SHA256
    expect(c.publicName).toBe(PUBLIC_NAME);
    expect(c.extensionsLength).toBe(0);

    const other = await marshalConfig(PUBLIC_NAME, 42);
    expect(other.privateKey).not.toEqual(m.privateKey); // a new key every time
  });

  it('refuses an invalid public name', async () => {
    await expect(marshalConfig('not a name!', 1)).rejects.toThrow(/marshal-config failed/);
  });
});

describe('BoringSSL client <-> BoringSSL server', () => {
  let cfg: Awaited<ReturnType<typeof marshalConfig>>;
  let server: BoringServer;
  let seen = 0;

  beforeAll(async () => {
    cfg = await marshalConfig(PUBLIC_NAME, 7);
    server = await startServer({
      cert: pki.certPath,
      key: pki.keyPath,
      echKeys: [{ privateKey: cfg.privateKey, echConfig: cfg.echConfig }],
      alpn: ['h2', 'http/1.1'],
    });
  });

  afterAll(async () => {
    await server?.close();
  });

  /** The server result of the next connection. */
  const nextServerResult = () => server.result(seen++);

  it('advertises exactly the marshalled config as its retry list', () => {
    expect(server.port).toBeGreaterThan(0);
    expect(server.echConfigList).toBe(cfg.echConfigList.toString('base64'));
  });

  it('accepts ECH: client sees acceptance, server saw the inner SNI, data is echoed', async () => {
    const r = await runClient({
      port: server.port,
      sni: INNER_NAME,
      echConfigList: cfg.echConfigList,
      ca: pki.caCertPath,
      alpn: ['http/1.1'],
      send: 'ping over ECH',
    });
    expect(r.error).toBeNull();
    expect(r.exitCode).toBe(0);
    expect(r.handshake).toBe(true);
    expect(r.echAccepted).toBe(true);
    expect(r.echRejected).toBe(false);
    expect(r.retryConfigs).toBeNull();
    expect(r.verified).toBe(true);
    expect(r.version).toBe('TLSv1.3');
    expect(r.alpn).toBe('http/1.1');
    expect(r.response).toBe('ping over ECH');

    const s = await nextServerResult();
    expect(s.handshake).toBe(true);
    expect(s.echAccepted).toBe(true);
    expect(s.sni).toBe(INNER_NAME);
    expect(s.clientHelloEch).toBe('inner');
    expect(s.alpn).toBe('http/1.1');
    expect(s.received).toBe('ping over ECH');
    expect(s.error).toBeNull();
  });

  it('rejects a stale config and hands back the server config list as retry_configs', async () => {
    const stale = await marshalConfig(PUBLIC_NAME, 7); // same id, other key
    const r = await runClient({
      port: server.port,
      sni: INNER_NAME,
      echConfigList: stale.echConfigList,
      ca: pki.caCertPath,
    });
    expect(r.handshake).toBe(false);
    expect(r.exitCode).toBe(1);
    expect(r.echAccepted).toBe(false);
    expect(r.echRejected).toBe(true);
    expect(r.errorReason).toBe('ECH_REJECTED');
    expect(r.alertSent?.code).toBe(121); // ech_required
    expect(r.retryConfigs).toBe(cfg.echConfigList.toString('base64'));
    // BoringSSL authenticated the rejection against the public name.
    expect(r.verified).toBe(true);
    expect(r.peerCertSubject).toContain(PUBLIC_NAME);

    const s = await nextServerResult();
    expect(s.echAccepted).toBe(false);
    expect(s.sni).toBe(PUBLIC_NAME);
    expect(s.clientHelloEch).toBe('outer');
    expect(s.alertReceived?.code).toBe(121);
  });

  it('retries with the retry configs after a rejection and is accepted', async () => {
    const stale = await marshalConfig(PUBLIC_NAME, 9);
    const r = await runClient({
      port: server.port,
      sni: INNER_NAME,
      echConfigList: stale.echConfigList,
      ca: pki.caCertPath,
      retry: true,
      send: 'second try',
    });
    expect(r.retried).toBe(true);
    expect(r.retriedWithoutEch).toBe(false);
    expect(r.first?.echRejected).toBe(true);
    expect(r.firstRetryConfigs).toBe(cfg.echConfigList.toString('base64'));
    expect(r.handshake).toBe(true);
    expect(r.echAccepted).toBe(true);
    expect(r.response).toBe('second try');

    const [first, second] = [await nextServerResult(), await nextServerResult()];
    expect(first.echAccepted).toBe(false);
    expect(first.sni).toBe(PUBLIC_NAME);
    expect(second.echAccepted).toBe(true);
    expect(second.sni).toBe(INNER_NAME);
  });

  it('GREASE: handshake succeeds for the real SNI without ECH', async () => {
    const r = await runClient({ port: server.port, sni: INNER_NAME, grease: true, ca: pki.caCertPath });
    expect(r.handshake).toBe(true);
    expect(r.echAccepted).toBe(false);
    expect(r.echRejected).toBe(false);
    expect(r.echConfigured).toBe(false);
    expect(r.retryConfigs).toBeNull();

    const s = await nextServerResult();
    expect(s.handshake).toBe(true);
    expect(s.echAccepted).toBe(false);
    expect(s.sni).toBe(INNER_NAME); // GREASE carries the real SNI in clear
    expect(s.clientHelloEch).toBe('outer'); // ...and an outer ECH extension
  });

  it('no ECH at all: the ClientHello carries no ECH extension', async () => {
    const r = await runClient({ port: server.port, sni: INNER_NAME, ca: pki.caCertPath });
    expect(r.handshake).toBe(true);
    expect(r.echAccepted).toBe(false);
    const s = await nextServerResult();
    expect(s.echAccepted).toBe(false);
    expect(s.clientHelloEch).toBeNull();
  });

  it('certificate verification can fail: a name outside the certificate is refused', async () => {
    const r = await runClient({ port: server.port, sni: 'elsewhere.test', ca: pki.caCertPath });
    expect(r.handshake).toBe(false);
    expect(r.verified).toBe(false);
    expect(r.verifyError).not.toBeNull();
    expect(r.alertSent).not.toBeNull();
    const s = await nextServerResult();
    expect(s.handshake).toBe(false);
    expect(s.alertReceived).not.toBeNull();
  });
});

describe('BoringSSL server variants', () => {
  it('HelloRetryRequest (server only P-256, client X25519 first) keeps ECH accepted', async () => {
    const cfg = await marshalConfig(PUBLIC_NAME, 3);
    const server = await startServer({
      cert: pki.certPath,
      key: pki.keyPath,
      echKeys: [{ privateKey: cfg.privateKey, echConfig: cfg.echConfig }],
      groups: ['P-256'],
      once: true,
    });
    try {
      const r = await runClient({
        port: server.port,
        sni: INNER_NAME,
        echConfigList: cfg.echConfigList,
        ca: pki.caCertPath,
        groups: ['X25519', 'P-256'],
      });
      expect(r.handshake).toBe(true);
      expect(r.hrr).toBe(true);
      expect(r.group).toBe('P-256');
      expect(r.echAccepted).toBe(true);
      const s = await server.result(0);
      expect(s.hrr).toBe(true);
      expect(s.echAccepted).toBe(true);
      expect(s.sni).toBe(INNER_NAME);
      expect(await server.exited).toBe(0); // --once
    } finally {
      await server.close();
    }
  });

  for (const keyType of ['rsa', 'ed25519'] as const) {
    it(`serves a ${keyType} certificate from makeTestPki`, async () => {
      const p = await makeTestPki([PUBLIC_NAME], { keyType });
      const server = await startServer({ cert: p.certPath, key: p.keyPath, once: true });
      try {
        const r = await runClient({
          port: server.port,
          sni: PUBLIC_NAME,
          ca: p.caCertPath,
          ed25519: keyType === 'ed25519',
        });
        expect(r.error).toBeNull();
        expect(r.handshake).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.peerSignatureAlgorithm).toBe(keyType === 'rsa' ? 'rsa_pss_rsae_sha256' : 'ed25519');
        expect(server.echConfigList).toBeNull();
        expect((await server.result(0)).handshake).toBe(true);
      } finally {
        await server.close();
        await p.cleanup();
      }
    });
  }

  it('client loop mode with --connect-alt sends every second connection to the other server', async () => {
    // The handshake bench's two-process control (src/bench/handshake-cpu.ts,
    // processes2_us) relies on this split.
    const a = await startServer({ cert: pki.certPath, key: pki.keyPath });
    const b = await startServer({ cert: pki.certPath, key: pki.keyPath });
    try {
      const bin = await buildHarness();
      const { stdout } = await execFileP(bin, ['client', '--connect', `127.0.0.1:${a.port}`, '--connect-alt', `127.0.0.1:${b.port}`, '--sni', PUBLIC_NAME, '--count', '5', '--timeout', '10']);
      expect(JSON.parse(stdout.trim())).toMatchObject({ count: 5, handshakes: 5 });
      await a.waitForResults(3);
      await b.waitForResults(2);
      await new Promise((r) => setTimeout(r, 200));
      expect([a.results.length, b.results.length]).toEqual([3, 2]);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('close() kills the server process', async () => {
    const server = await startServer({ cert: pki.certPath, key: pki.keyPath });
    await server.close();
    expect(() => process.kill(server.pid, 0)).toThrow();
    await expect(runClient({ port: server.port, sni: PUBLIC_NAME })).resolves.toMatchObject({
      handshake: false,
      errorReason: 'CONNECT',
    });
  });
});
