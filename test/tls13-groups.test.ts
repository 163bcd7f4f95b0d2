/**
 * Key exchange groups (src/tls13/groups.ts): X25519 through JWK raw keys
 * against the SPKI DER route it replaced, small-order X25519 shares and
 * invalid P-256 points refused with illegal_parameter (RFC 9846 §7.4.2,
 * §4.2.8.2), X25519MLKEM768 keeping its X25519 half, and the structural fact
 * that a server key share makes no SPKI/DER import or export.
 */
import * as nodeCrypto from 'node:crypto';
import { afterEach, describe, expect, test, vi } from 'vitest';

// Count node:crypto key imports/exports made by the module under test.
vi.mock('node:crypto', async (importOriginal) => {
  const orig = await importOriginal<typeof import('node:crypto')>();
  const native = orig as unknown as Record<string, unknown>;
  // crypto/mlkem.ts probes for native ML-KEM (Node ≥ 24): keep those names defined.
  return { ...orig, encapsulate: native.encapsulate, decapsulate: native.decapsulate, createPublicKey: vi.fn(orig.createPublicKey) };
});

const { createPublicKey, diffieHellman, generateKeyPairSync, createECDH } = nodeCrypto;
const { generateEphemeralKey, serverKeyShare } = await import('../src/tls13/groups.js');
const { NamedGroup } = await import('../src/tls/constants.js');
const { mlkem768, mlkemSeed, MLKEM768 } = await import('../src/crypto/mlkem.js');

const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');

/** The shared secret the old code computed: the peer's share imported as SPKI DER. */
function spkiRoute(privateKey: nodeCrypto.KeyObject, peer: Uint8Array): Uint8Array {
  const pk = createPublicKey({ key: Buffer.concat([SPKI_PREFIX, peer]), format: 'der', type: 'spki' });
  return new Uint8Array(diffieHellman({ privateKey, publicKey: pk }));
}

function rawPublic(k: nodeCrypto.KeyObject): Uint8Array {
  const spki = k.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

// Small-order and non-canonical X25519 u-coordinates (RFC 7748 §6.1: the
// all-zero result they produce MUST be checked), little-endian hex.
const SMALL_ORDER = [
  '0000000000000000000000000000000000000000000000000000000000000000',
  '0100000000000000000000000000000000000000000000000000000000000000',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f',
  // the same points with the top bit set, which RFC 7748 §5 masks off
  '0000000000000000000000000000000000000000000000000000000000000080',
  'e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b880',
  '5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f11d7',
  'ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
  'eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff',
].map((h) => new Uint8Array(Buffer.from(h, 'hex')));

afterEach(() => vi.mocked(createPublicKey).mockClear());

describe('X25519', () => {
  test('server share and secret equal the SPKI route, for random clients', () => {
    for (let i = 0; i < 50; i++) {
      const client = generateKeyPairSync('x25519');
      const { keyExchange, sharedSecret } = serverKeyShare(NamedGroup.x25519, rawPublic(client.publicKey));
      expect(keyExchange.length).toBe(32);
      expect(sharedSecret).toEqual(spkiRoute(client.privateKey, keyExchange));
    }
  });

  test('the ephemeral key agrees with the SPKI route both ways', () => {
    const a = generateEphemeralKey(NamedGroup.x25519);
    const b = generateKeyPairSync('x25519');
    expect(a.computeSecret(rawPublic(b.publicKey))).toEqual(spkiRoute(b.privateKey, a.publicKey));
    expect(a.publicKey).toBeInstanceOf(Uint8Array);
    expect(a.publicKey.buffer.byteLength).toBe(32); // its own bytes, not a view of a pool
  });

  test('small-order and non-canonical shares are illegal_parameter (RFC 9846 §7.4.2), as on the SPKI route', () => {
    const priv = generateKeyPairSync('x25519').privateKey;
    for (const p of SMALL_ORDER) {
      expect(() => spkiRoute(priv, p)).toThrow(); // the old route refused it too
      expect(() => serverKeyShare(NamedGroup.x25519, p)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
      expect(() => generateEphemeralKey(NamedGroup.x25519).computeSecret(p)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    }
  });

  test('a share of another length is illegal_parameter', () => {
    for (const n of [0, 31, 33, 65]) {
      expect(() => serverKeyShare(NamedGroup.x25519, new Uint8Array(n).fill(9))).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    }
  });

  test('a server key share makes no SPKI/DER import or export (JWK raw keys only)', () => {
    const client = rawPublic(generateKeyPairSync('x25519').publicKey);
    const exportSpy = vi.spyOn(Object.getPrototypeOf(generateKeyPairSync('x25519').publicKey) as { export: nodeCrypto.KeyObject['export'] }, 'export');
    try {
      vi.mocked(createPublicKey).mockClear();
      serverKeyShare(NamedGroup.x25519, client);
      const imports = vi.mocked(createPublicKey).mock.calls.map((c) => (c[0] as { format?: string }).format);
      expect(imports).toEqual(['jwk']);
      const exports = exportSpy.mock.calls.map((c) => (c[0] as { format?: string } | undefined)?.format);
      expect(exports.filter((f) => f !== 'jwk')).toEqual([]); // no SPKI/DER export (the public key comes back as JWK)
    } finally {
      exportSpy.mockRestore();
    }
  });
});

describe('secp256r1', () => {
  test('agrees with createECDH; invalid points are illegal_parameter', () => {
    const client = createECDH('prime256v1');
    client.generateKeys();
    const { keyExchange, sharedSecret } = serverKeyShare(NamedGroup.secp256r1, client.getPublicKey());
    expect(keyExchange.length).toBe(65);
    expect(sharedSecret).toEqual(new Uint8Array(client.computeSecret(keyExchange)));
    const off = new Uint8Array(client.getPublicKey());
    off[64]! ^= 1; // off the curve
    const compressed = new Uint8Array(client.getPublicKey(null, 'compressed'));
    const zero = new Uint8Array(65);
    zero[0] = 4; // (0, 0) is not on the curve
    const tooShort = new Uint8Array(client.getPublicKey()).subarray(0, 64);
    for (const bad of [off, compressed, zero, tooShort]) {
      expect(() => serverKeyShare(NamedGroup.secp256r1, bad)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
    }
  });
});

describe('X25519MLKEM768', () => {
  test('the hybrid secret is ML-KEM ‖ X25519, and its X25519 half refuses small-order shares', () => {
    const dk = mlkem768().fromSeed(mlkemSeed());
    const x = generateKeyPairSync('x25519');
    const share = new Uint8Array(MLKEM768.encapsulationKey + 32);
    share.set(dk.publicKey, 0);
    share.set(rawPublic(x.publicKey), MLKEM768.encapsulationKey);
    const { keyExchange, sharedSecret } = serverKeyShare(NamedGroup.X25519MLKEM768, share);
    const ssM = dk.decapsulate(keyExchange.subarray(0, MLKEM768.ciphertext));
    const ssX = spkiRoute(x.privateKey, keyExchange.subarray(MLKEM768.ciphertext));
    expect(sharedSecret).toEqual(new Uint8Array([...ssM, ...ssX]));
    // and the client side of the hybrid (generateEphemeralKey) agrees with the server side
    const c = generateEphemeralKey(NamedGroup.X25519MLKEM768);
    const s = serverKeyShare(NamedGroup.X25519MLKEM768, c.publicKey);
    expect(c.computeSecret(s.keyExchange)).toEqual(s.sharedSecret);
    share.set(SMALL_ORDER[2]!, MLKEM768.encapsulationKey);
    expect(() => serverKeyShare(NamedGroup.X25519MLKEM768, share)).toThrow(expect.objectContaining({ alert: 'illegal_parameter' }));
  });
});
