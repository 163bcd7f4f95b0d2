// @module-tag peer-openssl
// Server certificate path validation (src/tls13/path-validation.ts, RFC 5280
// §6.1) against OpenSSL. Each case builds a PKI with the openssl CLI, runs
// `openssl verify -purpose sslserver -verify_hostname NAME` on it, and
// requires verifyServerChain to reach the same verdict; on a refusal our
// alert must be the one OpenSSL's TLS client sends for the error `openssl
// verify` reports (observed with s_client: invalid CA → unknown_ca,
// unsuitable purpose → unsupported_certificate, unhandled critical extension
// → certificate_unknown, expired → certificate_expired, host mismatch →
// bad_certificate). Then the cases where this client is stricter than
// OpenSSL on purpose, and end-to-end handshakes with a CA:FALSE intermediate.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { execFile } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { isIP, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import { CA_EXTENSIONS, leafExtensions, makeTestChain, type TestChain, type TestChainCert, type TestChainSpec } from './peers/certs.js';
import { CertificateError, verifyServerChain, type CertificateFailure } from '../src/tls13/path-validation.js';
import { connectTls13 } from '../src/tls13/client-socket.js';
import { connectEch, EchRejectedError } from '../src/tls13/ech-client.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { startServer } from './tls13-helpers.js';

const HOST = 'www.example.test';
const DAY = 86400_000;

function pems(text: string): X509Certificate[] {
  return (text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? []).map((b) => new X509Certificate(b));
}

const root = (o: Partial<TestChainCert> = {}): TestChainCert => ({ cn: 'Catalogue Root', extensions: CA_EXTENSIONS, ...o });
const ca = (cn: string, extensions: readonly string[] = CA_EXTENSIONS, o: Partial<TestChainCert> = {}): TestChainCert => ({ cn, extensions, ...o });
const leaf = (names: string[] = [HOST], o: Partial<TestChainCert> = {}): TestChainCert => ({ cn: names[0]!, extensions: leafExtensions(names), ...o });
/** The leaf's extensions with the line starting with `key` replaced (or dropped with `undefined`). */
const leafWith = (key: string, line: string | undefined, names: string[] = [HOST]): TestChainCert => ({
  cn: names[0]!,
  extensions: leafExtensions(names).flatMap((l) => (l.startsWith(key) ? (line === undefined ? [] : [line]) : [l])),
});
const withExtra = (c: TestChainCert, ...lines: string[]): TestChainCert => ({ ...c, extensions: [...c.extensions, ...lines] });

interface Case {
  name: string;
  spec: TestChainSpec;
  host: string;
  /** What `openssl verify` says: null for OK, else its first error text. Documents the case; the comparison is with the live run. */
  openssl: string | null;
  /** Certificates the server sends after the leaf (and `-untrusted` gets); default the intermediates, leaf side first. */
  send?: (c: TestChain) => string;
}

const CATALOGUE: Case[] = [
  { name: 'valid chain with one intermediate', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf() }, host: HOST, openssl: null },
  { name: 'valid chain with two intermediates', spec: { root: root(), intermediates: [ca('Int A'), ca('Int B')], leaf: leaf() }, host: HOST, openssl: null },
  {
    name: 'intermediate with basicConstraints critical,CA:FALSE',
    spec: { root: root(), intermediates: [ca('Int A', ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyCertSign,cRLSign'])], leaf: leaf() },
    host: HOST,
    openssl: 'invalid CA certificate',
  },
  {
    name: 'v3 intermediate without basicConstraints',
    spec: { root: root(), intermediates: [ca('Int A', ['keyUsage = critical,keyCertSign,cRLSign', 'subjectKeyIdentifier = hash'])], leaf: leaf() },
    host: HOST,
    openssl: 'invalid CA certificate',
  },
  {
    name: 'pathLen exceeded: root → int (pathlen:0) → int → leaf',
    spec: { root: root(), intermediates: [ca('Int A', ['basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign']), ca('Int B')], leaf: leaf() },
    host: HOST,
    openssl: 'path length constraint exceeded',
  },
  {
    name: 'pathLen respected: root → int (pathlen:1) → int → leaf',
    spec: { root: root(), intermediates: [ca('Int A', ['basicConstraints = critical,CA:TRUE,pathlen:1', 'keyUsage = critical,keyCertSign,cRLSign']), ca('Int B')], leaf: leaf() },
    host: HOST,
    openssl: null,
  },
  {
    name: 'pathLen exceeded at the root: root (pathlen:0) → int → leaf',
    spec: { root: root({ extensions: ['basicConstraints = critical,CA:TRUE,pathlen:0', 'keyUsage = critical,keyCertSign,cRLSign'] }), intermediates: [ca('Int A')], leaf: leaf() },
    host: HOST,
    openssl: 'path length constraint exceeded',
  },
  {
    name: 'intermediate keyUsage without keyCertSign',
    spec: { root: root(), intermediates: [ca('Int A', ['basicConstraints = critical,CA:TRUE', 'keyUsage = critical,digitalSignature,cRLSign'])], leaf: leaf() },
    host: HOST,
    openssl: 'invalid CA certificate',
  },
  {
    name: 'leaf with extendedKeyUsage clientAuth only',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: leafWith('extendedKeyUsage', 'extendedKeyUsage = clientAuth') },
    host: HOST,
    openssl: 'unsuitable certificate purpose',
  },
  {
    name: 'leaf without extendedKeyUsage',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: leafWith('extendedKeyUsage', undefined) },
    host: HOST,
    openssl: null,
  },
  {
    name: 'intermediate with extendedKeyUsage clientAuth only',
    spec: { root: root(), intermediates: [ca('Int A', [...CA_EXTENSIONS, 'extendedKeyUsage = clientAuth'])], leaf: leaf() },
    host: HOST,
    openssl: 'unsuitable certificate purpose',
  },
  {
    name: 'intermediate with extendedKeyUsage serverAuth',
    spec: { root: root(), intermediates: [ca('Int A', [...CA_EXTENSIONS, 'extendedKeyUsage = serverAuth'])], leaf: leaf() },
    host: HOST,
    openssl: null,
  },
  {
    name: 'expired intermediate',
    spec: { root: root({ notBefore: new Date('2019-01-01T00:00:00Z') }), intermediates: [ca('Int A', CA_EXTENSIONS, { notBefore: new Date('2020-01-01T00:00:00Z'), notAfter: new Date('2021-01-01T00:00:00Z') })], leaf: leaf() },
    host: HOST,
    openssl: 'certificate has expired',
  },
  {
    name: 'expired root',
    spec: { root: root({ notBefore: new Date(Date.now() - 30 * DAY), notAfter: new Date(Date.now() - DAY) }), intermediates: [ca('Int A')], leaf: leaf() },
    host: HOST,
    openssl: 'certificate has expired',
  },
  {
    name: 'leaf not yet valid',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf([HOST], { notBefore: new Date(Date.now() + DAY), notAfter: new Date(Date.now() + 3 * DAY) }) },
    host: HOST,
    openssl: 'certificate is not yet valid',
  },
  { name: 'wrong host name', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf() }, host: 'other.example.test', openssl: 'hostname mismatch' },
  { name: 'wildcard matches one left-most label', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['*.example.test']) }, host: 'a.example.test', openssl: null },
  { name: 'wildcard does not match two labels', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['*.example.test']) }, host: 'a.b.example.test', openssl: 'hostname mismatch' },
  { name: 'wildcard does not match the bare domain', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['*.example.test']) }, host: 'example.test', openssl: 'hostname mismatch' },
  { name: 'IP address in subjectAltName', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['127.0.0.1']) }, host: '127.0.0.1', openssl: null },
  { name: 'other IP address', spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['127.0.0.1']) }, host: '127.0.0.2', openssl: 'IP address mismatch' },
  {
    name: 'unknown critical extension on the leaf',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: withExtra(leaf(), '1.3.6.1.4.1.55555.1 = critical,ASN1:NULL') },
    host: HOST,
    openssl: 'unhandled critical extension',
  },
  {
    name: 'unknown critical extension on the intermediate',
    spec: { root: root(), intermediates: [withExtra(ca('Int A'), '1.3.6.1.4.1.55555.1 = critical,ASN1:NULL')], leaf: leaf() },
    host: HOST,
    openssl: 'unhandled critical extension',
  },
  {
    name: 'unknown non-critical extension',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: withExtra(leaf(), '1.3.6.1.4.1.55555.1 = ASN1:NULL') },
    host: HOST,
    openssl: null,
  },
  {
    name: 'missing intermediate',
    spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf() },
    host: HOST,
    openssl: 'unable to get local issuer certificate',
    send: () => '',
  },
  {
    name: 'intermediates in reverse order, plus the root',
    spec: { root: root(), intermediates: [ca('Int A'), ca('Int B')], leaf: leaf() },
    host: HOST,
    openssl: null,
    send: (c) => pems(c.untrustedPem).reverse().map((x) => x.toString()).join('') + c.rootPem,
  },
];

interface OpensslVerdict {
  ok: boolean;
  /** Text of the first error `openssl verify` printed. */
  error: string | null;
}

/** `openssl verify -purpose sslserver -verify_hostname|-verify_ip HOST`, with `untrusted` as -untrusted. */
async function opensslVerify(c: TestChain, untrusted: string, host: string): Promise<OpensslVerdict> {
  const args = ['verify', '-CAfile', c.rootPath, '-purpose', 'sslserver', isIP(host) ? '-verify_ip' : '-verify_hostname', host];
  if (untrusted) {
    const path = join(c.dir, 'sent-untrusted.pem');
    await writeFile(path, untrusted);
    args.push('-untrusted', path);
  }
  args.push(c.leafPath);
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { timeout: 20_000, env: { ...process.env, OPENSSL_CONF: '/dev/null' } }, (err, stdout, stderr) => {
      const m = /error \d+ at \d+ depth lookup: ([^\n]+)/.exec(stderr + stdout);
      if (!err && /: OK\s*$/.test(stdout)) resolve({ ok: true, error: null });
      else if (err && m) resolve({ ok: false, error: m[1]!.trim() });
      else reject(new Error(`openssl verify gave no verdict: ${err?.message ?? ''}\n${stdout}\n${stderr}`));
    });
  });
}

/**
 * The alert OpenSSL's client sends for each `openssl verify` error (seen
 * with `openssl s_client -verify_return_error`), except "not yet valid":
 * OpenSSL sends bad_certificate, RFC 9846 §6.2 names certificate_expired
 * ("has expired or is not currently valid").
 */
const ALERT_FOR_OPENSSL_ERROR: Record<string, string> = {
  'invalid CA certificate': 'unknown_ca',
  'path length constraint exceeded': 'unknown_ca',
  'unable to get local issuer certificate': 'unknown_ca',
  'unsuitable certificate purpose': 'unsupported_certificate',
  'unhandled critical extension': 'certificate_unknown',
  'certificate has expired': 'certificate_expired',
  'certificate is not yet valid': 'certificate_expired',
  'hostname mismatch': 'bad_certificate',
  'IP address mismatch': 'bad_certificate',
};

function ours(chain: X509Certificate[], roots: X509Certificate[], host: string): { ok: true } | { ok: false; error: CertificateError } {
  try {
    verifyServerChain(chain, roots, host);
    return { ok: true };
  } catch (e) {
    // Every refusal is typed: ERR_CERTIFICATE with an alert.
    expect(e).toBeInstanceOf(CertificateError);
    expect(e).toMatchObject({ code: 'ERR_CERTIFICATE' });
    return { ok: false, error: e as CertificateError };
  }
}

describe('verifyServerChain agrees with openssl verify -purpose sslserver', () => {
  for (const k of CATALOGUE) {
    test(k.name, async () => {
      const c = await makeTestChain(k.spec);
      try {
        const sent = k.send ? k.send(c) : c.untrustedPem;
        const ossl = await opensslVerify(c, sent, k.host);
        // The case builds what it says it builds.
        expect(ossl.error).toBe(k.openssl);
        const r = ours([...pems(c.leafPem), ...pems(sent)], pems(c.rootPem), k.host);
        expect(r.ok, r.ok ? 'accepted' : r.error.message).toBe(ossl.ok);
        if (!r.ok) expect(r.error.alert).toBe(ALERT_FOR_OPENSSL_ERROR[ossl.error!]);
      } finally {
        await c.cleanup();
      }
    }, 30_000);
  }
});

/**
 * Cases where this client refuses what `openssl verify` accepts, each for a
 * named rule. The OpenSSL verdict is checked too, so each test shows the
 * difference is real.
 */
describe('stricter than openssl verify, on purpose', () => {
  const stricter: { name: string; spec: TestChainSpec; host: string; alert: string; reason: CertificateFailure }[] = [
    {
      // Name constraints are not enforced here, so a CA carrying them is refused.
      name: 'an intermediate with nameConstraints (even ones the leaf satisfies)',
      spec: { root: root(), intermediates: [ca('Int A', [...CA_EXTENSIONS, 'nameConstraints = critical,permitted;DNS:example.test'])], leaf: leaf() },
      host: HOST,
      alert: 'certificate_unknown',
      reason: 'name_constraints',
    },
    {
      // RFC 9846 §4.4.2.2: digitalSignature MUST be set if keyUsage is present.
      name: 'a leaf whose keyUsage lacks digitalSignature',
      spec: { root: root(), intermediates: [ca('Int A')], leaf: leafWith('keyUsage', 'keyUsage = critical,keyEncipherment') },
      host: HOST,
      alert: 'unsupported_certificate',
      reason: 'purpose',
    },
    {
      // RFC 9525 §6.1: no CN-ID; OpenSSL falls back to the CN without SANs.
      name: 'a leaf naming the host only in its CN',
      spec: { root: root(), intermediates: [ca('Int A')], leaf: leafWith('subjectAltName', undefined) },
      host: HOST,
      alert: 'bad_certificate',
      reason: 'host_mismatch',
    },
    {
      // RFC 9525 §6.3: the wildcard is the complete left-most label.
      name: 'a partial wildcard (w*.example.test)',
      spec: { root: root(), intermediates: [ca('Int A')], leaf: leaf(['w*.example.test']) },
      host: HOST,
      alert: 'bad_certificate',
      reason: 'host_mismatch',
    },
    {
      // RFC 9846 §4.4.2.4: SHA-1 signatures RECOMMENDED refused with bad_certificate.
      name: 'an intermediate signed with SHA-1',
      spec: { root: root(), intermediates: [ca('Int A', CA_EXTENSIONS, { digest: 'sha1' })], leaf: leaf() },
      host: HOST,
      alert: 'bad_certificate',
      reason: 'weak_signature',
    },
  ];
  for (const k of stricter) {
    test(k.name, async () => {
      const c = await makeTestChain(k.spec);
      try {
        expect(await opensslVerify(c, c.untrustedPem, k.host)).toEqual({ ok: true, error: null });
        const r = ours(pems(c.chainPem), pems(c.rootPem), k.host);
        expect(r.ok).toBe(false);
        if (!r.ok) expect(r.error).toMatchObject({ alert: k.alert, reason: k.reason });
      } finally {
        await c.cleanup();
      }
    }, 30_000);
  }
});

describe('malformed and degenerate input', () => {
  test('an empty chain is bad_certificate', () => {
    expect(() => verifyServerChain([], [], HOST)).toThrow(expect.objectContaining({ alert: 'bad_certificate', reason: 'empty_chain' }));
  });

  test('a tampered signature is bad_certificate; a CA of the same name but another key is unknown_ca', async () => {
    const c = await makeTestChain({ root: root(), intermediates: [ca('Int A')], leaf: leaf() });
    const other = await makeTestChain({ root: root(), intermediates: [], leaf: leaf() });
    try {
      // The last byte of the leaf is the last byte of its ECDSA signature's s.
      const der = Buffer.from(pems(c.leafPem)[0]!.raw);
      der[der.length - 1]! ^= 0x01;
      const r = ours([new X509Certificate(der), ...pems(c.untrustedPem)], pems(c.rootPem), HOST);
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatchObject({ alert: 'bad_certificate', reason: 'bad_signature', depth: 0 });
      // Both roots are "CN=Catalogue Root"; the authority key identifier tells them apart (openssl verify: unable to get local issuer certificate).
      const u = ours(pems(c.chainPem), pems(other.rootPem), HOST);
      expect(u.ok).toBe(false);
      if (!u.ok) expect(u.error).toMatchObject({ alert: 'unknown_ca', reason: 'untrusted' });
    } finally {
      await Promise.all([c.cleanup(), other.cleanup()]);
    }
  }, 30_000);

  test('a chain that needs more than 100 signature checks is given up: unknown_ca', async () => {
    const c = await makeTestChain({ root: root(), intermediates: [ca('Int A')], leaf: leaf() });
    // Another "CN=Int A" without a subject key identifier: its name matches the leaf's issuer, its signature check fails.
    const decoy = await makeTestChain({ root: root(), intermediates: [ca('Int A', ['basicConstraints = critical,CA:TRUE', 'subjectKeyIdentifier = none', 'authorityKeyIdentifier = none'])], leaf: leafWith('authorityKeyIdentifier', undefined) });
    try {
      const decoys = Array.from({ length: 150 }, () => pems(decoy.untrustedPem)[0]!);
      expect(ours([...pems(c.leafPem), ...decoys, ...pems(c.untrustedPem)], pems(c.rootPem), HOST)).toMatchObject({
        ok: false,
        error: { alert: 'unknown_ca', reason: 'untrusted' },
      });
      // The same chain with a few decoys still validates.
      expect(ours([...pems(c.leafPem), ...decoys.slice(0, 5), ...pems(c.untrustedPem)], pems(c.rootPem), HOST)).toEqual({ ok: true });
    } finally {
      await Promise.all([c.cleanup(), decoy.cleanup()]);
    }
  }, 30_000);
});

// ------------------------------------------------------------ end to end

describe('end to end: a server presenting a CA:FALSE intermediate', () => {
  const badSpec: TestChainSpec = {
    root: root(),
    intermediates: [ca('Int A', ['basicConstraints = critical,CA:FALSE', 'keyUsage = critical,keyCertSign,cRLSign'])],
    leaf: leaf(['secret.example', 'cover.example']),
  };
  let bad: TestChain;
  let good: TestChain;
  beforeAll(async () => {
    bad = await makeTestChain(badSpec);
    good = await makeTestChain({ root: root(), intermediates: [ca('Int A'), ca('Int B')], leaf: leaf(['secret.example', 'cover.example']) });
  }, 60_000);
  afterAll(async () => {
    await bad?.cleanup();
    await good?.cleanup();
  });

  test('our TLS 1.3 client against Node (OpenSSL) tls: unknown_ca, and the server receives that alert', async () => {
    const serverErrors: Error[] = [];
    const server = tls.createServer({ minVersion: 'TLSv1.3', key: bad.leafKeyPem, cert: bad.chainPem }, (s) => s.end());
    server.on('tlsClientError', (e) => serverErrors.push(e));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const port = (server.address() as AddressInfo).port;
      const err = await new Promise<unknown>((resolve) => {
        const s = connectTls13({ host: '127.0.0.1', port, servername: 'secret.example', ca: bad.rootPem });
        s.on('secureConnect', () => resolve(undefined));
        s.on('error', resolve);
      });
      expect(err).toBeInstanceOf(CertificateError);
      expect(err).toMatchObject({ code: 'ERR_CERTIFICATE', alert: 'unknown_ca', reason: 'not_a_ca', depth: 1 });
      await expect.poll(() => serverErrors.map((e) => e.message).join('\n'), { timeout: 5000 }).toMatch(/unknown ca/i);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  describe('connectEch against our ECH server', () => {
    const key = generateEchKey({ publicName: 'cover.example', configId: 0x42 });
    const keys = new EchKeySet([key]);
    const list = encodeEchConfigList([key.config]);
    const staleList = encodeEchConfigList([generateEchKey({ publicName: 'cover.example', configId: 0x42 }).config]);

    async function withServer<T>(chain: TestChain, fn: (port: number, errors: Error[]) => Promise<T>): Promise<T> {
      const srv = await startServer({ key: chain.leafKeyPem, cert: chain.chainPem, onClientHello: createEchHook({ keys }) }, (s) => {
        s.on('error', () => undefined);
        s.end('hello\n');
      });
      try {
        return await fn(srv.port, srv.errors);
      } finally {
        await srv.close();
      }
    }
    const failure = (p: Promise<unknown>): Promise<unknown> =>
      p.then(
        (r) => {
          (r as { socket?: { destroy(): void } }).socket?.destroy();
          return undefined;
        },
        (e: unknown) => e,
      );

    test('ECH accepted, chain through two intermediates: connected', async () => {
      await withServer(good, async (port) => {
        const r = await connectEch({ host: '127.0.0.1', port, servername: 'secret.example', echConfigList: list, ca: good.rootPem });
        expect(r.echStatus).toBe('accepted');
        r.socket.destroy();
      });
    });

    test('ECH accepted, CA:FALSE intermediate: unknown_ca, and the server receives it', async () => {
      await withServer(bad, async (port, errors) => {
        const e = await failure(connectEch({ host: '127.0.0.1', port, servername: 'secret.example', echConfigList: list, ca: bad.rootPem }));
        expect(e).toMatchObject({ code: 'ERR_CERTIFICATE', alert: 'unknown_ca', reason: 'not_a_ca' });
        await expect.poll(() => errors.map((x) => x.message).join('\n'), { timeout: 5000 }).toMatch(/unknown_ca/);
      });
    });

    test('ECH rejected: the retry_configs are not authenticated by a CA:FALSE intermediate, no retry', async () => {
      await withServer(bad, async (port) => {
        const e = await failure(connectEch({ host: '127.0.0.1', port, servername: 'secret.example', echConfigList: staleList, ca: bad.rootPem, retry: true }));
        expect(e).not.toBeInstanceOf(EchRejectedError);
        expect(e).toMatchObject({ code: 'ERR_CERTIFICATE', alert: 'unknown_ca', reason: 'not_a_ca' });
      });
    });
  });
});
