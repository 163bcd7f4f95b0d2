// @module-tag peer-boringssl
// Real peer: BoringSSL (Debian android-libboringssl) as the ECH client. Its
// ClientHellos, sent over loopback, must decrypt with our keys; its ECHConfigs
// must decode with our codec. In CI a missing peer is a failure.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { KemId } from 'hpke-js';
import { ExtensionType } from '../src/tls/constants.js';
import { findExtension } from '../src/tls/client-hello.js';
import { decodeEchConfig, decodeEchConfigList } from '../src/ech/config.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { loadEchKeyDirectory } from '../src/keys/files.js';
import { loadKemPrivateKey } from '../src/crypto/kem.js';
import { buildHarness, marshalConfig, runClient } from './peers/boringssl.js';
import { type Capture, captureClientHellos } from './helpers/capture.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let capture: Capture;

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-boring-'));
  capture = await captureClientHellos();
}, 120_000);
afterAll(async () => {
  await capture?.close();
  await rm(dir, { recursive: true, force: true });
});

async function helloFromBoring(opts: Parameters<typeof runClient>[0] extends infer O ? Omit<O & object, 'port'> : never) {
  const client = runClient({ ...opts, port: capture.port, timeoutMs: 20_000 });
  const hello = await capture.next();
  await client; // fails (we hang up after the ClientHello); only its hello matters
  return hello;
}

describe('BoringSSL as ECH client against our decryption core', () => {
  it('a. takes the ECHConfigList from `ech-server keygen`; its ClientHello decrypts to the inner name, outer extensions expanded', async () => {
    const keysDir = join(dir, 'keys');
    const { stdout } = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', keysDir]);
    const generated = JSON.parse(stdout) as { echConfigList: string; configId: number };
    const keys = await loadEchKeyDirectory(keysDir);
    const { message } = await helloFromBoring({ sni: 'secret.example', echConfigList: generated.echConfigList, alpn: ['h2', 'http/1.1'] });
    const r = await decryptClientHello(message, keys);
    expect(r.status).toBe('accepted');
    if (r.status !== 'accepted') return;
    expect(r.outerServerName).toBe('cover.example');
    expect(r.innerServerName).toBe('secret.example');
    expect(r.configId).toBe(generated.configId);
    expect(r.alpn).toEqual(['h2', 'http/1.1']);
    // BoringSSL compresses its shared extensions (INTEROP.md): they were
    // expanded from the outer hello, byte for byte.
    expect(r.outerReferences).toEqual(expect.arrayContaining([ExtensionType.key_share, ExtensionType.supported_versions]));
    for (const t of r.outerReferences) {
      expect(findExtension(r.inner.extensions, t)!.data).toEqual(findExtension(r.outer.extensions, t)!.data);
    }
    // the inner session id is the outer one (§5.1)
    expect(r.inner.legacySessionId).toEqual(r.outer.legacySessionId);
  });

  it('b. an ECHConfig marshalled by BoringSSL decodes with our codec and its key loads and decrypts', async () => {
    const m = await marshalConfig('boring-cover.example', 42, { maxNameLen: 64 });
    const config = decodeEchConfig(m.echConfig);
    expect(config).toMatchObject({ configId: 42, kemId: KemId.DhkemX25519HkdfSha256, publicName: 'boring-cover.example', maximumNameLength: 64 });
    expect(Buffer.from(config.publicKey)).toEqual(m.publicKey);
    expect(Buffer.from(config.raw)).toEqual(m.echConfig);
    expect(decodeEchConfigList(m.echConfigList).configs[0]!.raw).toEqual(config.raw);
    const priv = loadKemPrivateKey(config.kemId, m.privateKey);
    expect(Buffer.from(priv.publicKey)).toEqual(m.publicKey);
    const keys = new EchKeySet([{ config, privateKey: priv, retry: true }]);
    const { message } = await helloFromBoring({ sni: 'inner.example', echConfigList: m.echConfigList });
    const r = await decryptClientHello(message, keys);
    expect(r.status === 'accepted' && r.innerServerName).toBe('inner.example');
  });

  it('c. a GREASE ECH ClientHello from BoringSSL yields rejected, not an error', async () => {
    const keys = await loadEchKeyDirectory(join(dir, 'keys'));
    for (let i = 0; i < 3; i++) {
      const { message } = await helloFromBoring({ sni: 'plain.example', grease: true });
      const r = await decryptClientHello(message, keys);
      expect(r.status).toBe('rejected');
      expect(r.status === 'rejected' && r.outerServerName).toBe('plain.example');
    }
  });
});
