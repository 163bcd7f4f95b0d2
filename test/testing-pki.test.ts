// createTestPki (src/testing/pki.ts): node:crypto alone, every leaf key type
// the tests need (makePki in tls13-helpers.ts is built on it), and Node's TLS
// (OpenSSL as a library, a peer nobody here wrote) accepts each chain.
import { describe, expect, it } from 'vitest';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createTestPki, type TestKeyType } from '../src/testing/pki.js';
import { makePki } from './tls13-helpers.js';
import { verifyServerChain } from '../src/tls13/path-validation.js';
import { statSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

async function handshake(caCert: string, leaf: { cert: string; key: string }, servername: string): Promise<{ authorized: boolean; error: string | null; protocol: string | null }> {
  const server = tls.createServer({ ...leaf, minVersion: 'TLSv1.3' }, (s) => s.end());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const { port } = server.address() as AddressInfo;
    return await new Promise((resolve, reject) => {
      const c = tls.connect({ port, host: '127.0.0.1', servername, ca: caCert, rejectUnauthorized: false }, () => {
        resolve({ authorized: c.authorized, error: c.authorizationError ? String(c.authorizationError) : null, protocol: c.getProtocol() });
        c.destroy();
      });
      c.on('error', reject);
    });
  } finally {
    await new Promise((r) => server.close(r));
  }
}

describe('createTestPki', () => {
  const pki = createTestPki();
  const cases: [TestKeyType, string, string[]][] = [
    ['ec', 'ec', ['a.test']],
    ['rsa', 'rsa', ['b.test', 'a.test']],
    ['ed25519', 'ed25519', ['ed.test']],
  ];
  for (const [kind, keyType, names] of cases) {
    it(`issues a ${kind} leaf for ${names.join(', ')} that Node's TLS verifies against the CA`, async () => {
      const leaf = pki.issue(names, { keyType: kind });
      const x = new X509Certificate(leaf.cert);
      expect(x.publicKey.asymmetricKeyType).toBe(keyType);
      expect(createPrivateKey(leaf.key).asymmetricKeyType).toBe(keyType);
      expect(x.checkPrivateKey(createPrivateKey(leaf.key))).toBe(true);
      expect(x.verify(new X509Certificate(pki.caCert).publicKey)).toBe(true);
      expect(x.subjectAltName).toBe(names.map((n) => `DNS:${n}`).join(', '));
      expect(x.ca).toBe(false);
      const r = await handshake(pki.caCert, leaf, names[names.length - 1]!);
      expect(r).toEqual({ authorized: true, error: null, protocol: 'TLSv1.3' });
    });
  }

  it('a wildcard leaf covers one label, and a name it does not cover fails verification', async () => {
    const leaf = pki.issue(['*.wild.test']);
    expect((await handshake(pki.caCert, leaf, 'x.wild.test')).authorized).toBe(true);
    const r = await handshake(pki.caCert, leaf, 'y.x.wild.test');
    expect(r.authorized).toBe(false);
    expect(r.error).toBe('ERR_TLS_CERT_ALTNAME_INVALID');
  });

  it('a leaf from another CA is not authorized', async () => {
    const other = createTestPki().issue(['a.test']);
    const r = await handshake(pki.caCert, other, 'a.test');
    expect(r.authorized).toBe(false);
  });

  it('two CAs of one name stay apart: the key identifiers send a stranger\'s leaf to unknown_ca, not to a failed signature', () => {
    const other = createTestPki();
    expect(new X509Certificate(other.caCert).subject).toBe(new X509Certificate(pki.caCert).subject);
    const stranger = new X509Certificate(other.issue(['a.test']).cert);
    const roots = [new X509Certificate(pki.caCert)];
    expect(() => verifyServerChain([stranger], roots, 'a.test')).toThrow(expect.objectContaining({ alert: 'unknown_ca' }));
    expect(() => verifyServerChain([new X509Certificate(pki.issue(['a.test']).cert)], roots, 'a.test')).not.toThrow();
  });

  it('the validity is the one asked for (number or options)', () => {
    const days = (pem: string) => (Date.parse(new X509Certificate(pem).validTo) - Date.now()) / 86400_000;
    expect(days(pki.issue(['d.test'], 2).cert)).toBeCloseTo(2, 1);
    expect(days(pki.issue(['d.test'], { days: 3, keyType: 'ed25519' }).cert)).toBeCloseTo(3, 1);
    expect(days(pki.issue(['d.test']).cert)).toBeCloseTo(30, 1);
  });
});

describe('makePki (test/tls13-helpers.ts) on createTestPki', () => {
  it('writes ca.pem, ca.key and one cert/key pair per leaf, keys 0600, and cleans up', () => {
    const pki = makePki();
    try {
      expect(readFileSync(join(pki.dir, 'ca.pem'), 'utf8')).toBe(pki.caPem);
      expect(statSync(join(pki.dir, 'ca.key')).mode & 0o077).toBe(0);
      for (const kind of ['ec', 'rsa', 'ed25519'] as const) {
        const leaf = pki.leaf(kind, ['localhost', `${kind}.test`]);
        expect(readFileSync(leaf.certPath, 'utf8')).toBe(leaf.cert);
        expect(readFileSync(leaf.keyPath, 'utf8')).toBe(leaf.key);
        expect(statSync(leaf.keyPath).mode & 0o077).toBe(0);
        const x = new X509Certificate(leaf.cert);
        expect(x.publicKey.asymmetricKeyType).toBe(kind);
        expect(x.subject).toBe('CN=localhost');
        expect(x.checkIssued(new X509Certificate(pki.caPem))).toBe(true);
      }
    } finally {
      pki.cleanup();
    }
    expect(existsSync(pki.dir)).toBe(false);
  });
});
