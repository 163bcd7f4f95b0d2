// Node 20 can deadlock in `KeyObject.export({ format: 'jwk' })` of a freshly
// generated X25519 key: the export holds the key's mutex while it allocates,
// a garbage collection in that allocation destroys the finished key
// generation job, and the job's destructor takes the same mutex (gdb:
// ExportJWKEdKey → CollectGarbage → ~KeyGenJob → uv_mutex_lock). The KEM
// code asks generateKeyPairSync for the JWKs instead (src/crypto/kem.ts).
import { describe, expect, it } from 'vitest';
import { KeyObject, generateKeyPairSync } from 'node:crypto';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { KemId } from 'hpke-js';
import { generateKemKeyPair, kemEncap, loadKemPrivateKey } from '../src/crypto/kem.js';
import { xwingEncapsulate, xwingFromSeed, xwingSeed } from '../src/crypto/xwing.js';

function countJwkExports<T>(fn: () => T): { result: T; calls: number } {
  // export() lives on the subclasses (PrivateKeyObject, PublicKeyObject).
  const sample = generateKeyPairSync('x25519');
  const protos = [Object.getPrototypeOf(sample.privateKey) as KeyObject, Object.getPrototypeOf(sample.publicKey) as KeyObject];
  const originals = protos.map((p) => p.export);
  let calls = 0;
  protos.forEach((p, i) => {
    const original = originals[i]!;
    p.export = function (this: KeyObject, options?: unknown) {
      if ((options as { format?: string } | undefined)?.format === 'jwk') calls++;
      return original.call(this, options as never);
    } as typeof original;
  });
  try {
    return { result: fn(), calls };
  } finally {
    protos.forEach((p, i) => (p.export = originals[i]!));
  }
}

describe('X25519 keys without KeyObject.export(jwk) after generateKeyPairSync', () => {
  it('key generation, HPKE encapsulation and X-Wing encapsulation make no JWK export of a key; the results still agree', () => {
    const { result: pair, calls: genCalls } = countJwkExports(() => generateKemKeyPair(KemId.DhkemX25519HkdfSha256));
    expect(genCalls).toBe(0);
    expect(pair.privateKey.length).toBe(32);
    expect(pair.publicKey.length).toBe(32);
    const { result: encap, calls: encCalls } = countJwkExports(() => kemEncap(KemId.DhkemX25519HkdfSha256, pair.publicKey));
    expect(encCalls).toBe(0);
    expect(encap.enc.length).toBe(32);
    // The recipient derives the same secret from enc.
    const sk = loadKemPrivateKey(KemId.DhkemX25519HkdfSha256, pair.privateKey);
    expect(Buffer.from(sk.decap(encap.enc)).toString('hex')).toBe(Buffer.from(encap.sharedSecret).toString('hex'));
    const xw = xwingFromSeed(xwingSeed());
    const { result: x, calls: xwCalls } = countJwkExports(() => xwingEncapsulate(xw.publicKey));
    expect(xwCalls).toBe(0);
    expect(x.ciphertext.length).toBe(1120);
  });

  it('100,000 key generations in a child process finish (the old export route hung in some runs: the deadlock needs a GC at the wrong moment)', async () => {
    const kem = fileURLToPath(new URL('../dist/crypto/kem.js', import.meta.url));
    const script = `import('${kem}').then(({ generateKemKeyPair }) => { for (let i = 0; i < 100000; i++) generateKemKeyPair(0x20); console.log('ok'); });`;
    const r = await new Promise<{ out: string; err: Error | null }>((res) =>
      execFile(process.execPath, ['-e', script], { timeout: 90_000 }, (err, out) => res({ out, err })),
    );
    expect(r.err, 'the child did not finish: deadlocked?').toBe(null);
    expect(r.out.trim()).toBe('ok');
  }, 120_000);
});
