// Private key files readable by group or others are refused at load, naming
// the file and the fix (`chmod 600 FILE`), as OpenSSH does; the explicit
// option `allowInsecureKeyFilePermissions` accepts them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateEchKey } from '../src/keys/generate.js';
import { formatEchKeyFile, loadEchKeyDirectory, readEchKeyFile, writeEchKeyFile } from '../src/keys/files.js';
import { InsecureKeyFileError, readPrivateKeyFile } from '../src/keys/permissions.js';
import { formatPublicEchFile, loadKeylessEchKeyDirectory } from '../src/keyless/files.js';
import { validateServeConfig } from '../src/front/config.js';
import { frontEndOptionsFromConfig } from '../src/front/serve.js';
import { keyServerOptionsFromConfig, validateKeyServerConfig } from '../src/keyless/keyserver-config.js';
import { createTestPki } from '../src/testing/pki.js';
import { EchError } from '../src/wire/alert.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-perm-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A fresh directory holding one ECH key file of `mode`. */
async function keyDir(name: string, mode: number): Promise<{ d: string; file: string }> {
  const d = join(dir, name);
  await mkdir(d, { mode: 0o700 });
  const key = generateEchKey({ publicName: 'cover.example', configId: 5 });
  const file = join(d, 'cover.pem');
  await writeFile(file, formatEchKeyFile(key.config, key.privateKeyRaw), { mode });
  await chmod(file, mode); // whatever the umask
  return { d, file };
}

async function refusal(p: Promise<unknown>): Promise<InsecureKeyFileError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(InsecureKeyFileError);
  return err as InsecureKeyFileError;
}

function expectNamesFix(err: EchError, file: string): void {
  expect(err).toBeInstanceOf(EchError);
  expect(err.code).toBe('ERR_INSECURE_KEY_FILE');
  expect(err.message).toContain(file);
  expect(err.message).toContain(`chmod 600 ${file}`);
  expect(err.message).toContain('allowInsecureKeyFilePermissions');
}

describe('ECH key files (loadEchKeyDirectory, readEchKeyFile)', () => {
  it('a 0644 key file is refused, naming the file and the fix', async () => {
    const { d, file } = await keyDir('world-readable', 0o644);
    const err = await refusal(loadEchKeyDirectory(d));
    expectNamesFix(err, file);
    expect(err.path).toBe(file);
    expect(err.mode).toBe(0o644);
    expectNamesFix(await refusal(readEchKeyFile(file)), file);
  });

  it('0640 (group-readable) is refused too; 0600 and 0400 load', async () => {
    expectNamesFix(await refusal(loadEchKeyDirectory((await keyDir('group', 0o640)).d)), join(dir, 'group', 'cover.pem'));
    expect((await loadEchKeyDirectory((await keyDir('private', 0o600)).d)).size).toBe(1);
    expect((await loadEchKeyDirectory((await keyDir('readonly', 0o400)).d)).size).toBe(1);
  });

  it('allowInsecureKeyFilePermissions: true loads a 0644 key file', async () => {
    const { d, file } = await keyDir('allowed', 0o644);
    expect((await loadEchKeyDirectory(d, { allowInsecureKeyFilePermissions: true })).size).toBe(1);
    expect((await readEchKeyFile(file, { allowInsecureKeyFilePermissions: true })).config.configId).toBe(5);
  });

  it('writeEchKeyFile writes files that load (0600)', async () => {
    const d = join(dir, 'written');
    await mkdir(d);
    const key = generateEchKey({ publicName: 'cover.example' });
    await writeEchKeyFile(join(d, 'k.pem'), key.config, key.privateKeyRaw);
    expect((await loadEchKeyDirectory(d)).size).toBe(1);
  });

  it('keyless: an ECHCONFIG-only (public) file may be 0644; one with a private key may not', async () => {
    const d = join(dir, 'keyless-public');
    await mkdir(d);
    const key = generateEchKey({ publicName: 'cover.example' });
    await writeFile(join(d, 'cover.pem'), formatPublicEchFile([key.config]), { mode: 0o644 });
    const remote = () => ({ kem: key.config.kemId, publicKey: key.config.publicKey, decap: () => new Uint8Array(32) });
    expect((await loadKeylessEchKeyDirectory(d, remote)).size).toBe(1);
    const { d: withPrivate, file } = await keyDir('keyless-private', 0o644);
    expectNamesFix(await refusal(loadKeylessEchKeyDirectory(withPrivate, remote)), file);
  });

  it('readPrivateKeyFile does not check files without a private key (certificates)', async () => {
    const f = join(dir, 'cert.pem');
    await writeFile(f, createTestPki().caCert, { mode: 0o644 });
    await chmod(f, 0o644);
    expect(await readPrivateKeyFile(f)).toMatch(/BEGIN CERTIFICATE/);
  });
});

describe('TLS key files of serve and of the key server', () => {
  const pki = createTestPki();
  async function tlsFiles(name: string, keyMode: number): Promise<{ d: string; cert: string; key: string }> {
    const d = join(dir, name);
    await mkdir(d);
    const leaf = pki.issue(['cover.example']);
    const cert = join(d, 'cover.crt');
    const key = join(d, 'cover.key');
    await writeFile(cert, leaf.cert, { mode: 0o644 });
    await writeFile(key, leaf.key, { mode: keyMode });
    await chmod(key, keyMode);
    const keys = join(d, 'keys');
    await mkdir(keys);
    const ech = generateEchKey({ publicName: 'cover.example' });
    await writeEchKeyFile(join(keys, 'cover.pem'), ech.config, ech.privateKeyRaw);
    await writeFile(join(d, 'ca.pem'), pki.caCert);
    return { d, cert, key };
  }
  const serveConfig = (extra: Record<string, unknown> = {}) => ({
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: 'cover.crt', key: 'cover.key' },
    ...extra,
  });

  it('serve: a 0644 publicName.key is refused naming the file; 0600 loads; the config field accepts 0644', async () => {
    const bad = await tlsFiles('serve-bad', 0o644);
    expectNamesFix(await refusal(frontEndOptionsFromConfig(validateServeConfig(serveConfig(), bad.d))), bad.key);
    const good = await tlsFiles('serve-good', 0o600);
    expect((await frontEndOptionsFromConfig(validateServeConfig(serveConfig(), good.d))).publicName.key).toMatch(/PRIVATE KEY/);
    const allowed = validateServeConfig(serveConfig({ allowInsecureKeyFilePermissions: true }), bad.d);
    expect(allowed.allowInsecureKeyFilePermissions).toBe(true);
    expect((await frontEndOptionsFromConfig(allowed)).publicName.key).toMatch(/PRIVATE KEY/);
    expect(() => validateServeConfig(serveConfig({ allowInsecureKeyFilePermissions: 'yes' }), bad.d)).toThrow(/allowInsecureKeyFilePermissions: must be true or false/);
  });

  it('serve: a 0644 route key and a 0644 ECH key file are refused too', async () => {
    const f = await tlsFiles('serve-route', 0o600);
    const routeKey = join(f.d, 'alpha.key');
    await writeFile(routeKey, pki.issue(['alpha.example']).key, { mode: 0o644 });
    await chmod(routeKey, 0o644);
    const route = { serverName: 'alpha.example', cert: 'cover.crt', key: 'alpha.key', respond: 'ech-status' };
    expectNamesFix(await refusal(frontEndOptionsFromConfig(validateServeConfig(serveConfig({ routes: [route] }), f.d))), routeKey);
    await chmod(join(f.d, 'keys', 'cover.pem'), 0o644);
    expectNamesFix(await refusal(frontEndOptionsFromConfig(validateServeConfig(serveConfig(), f.d))), join(f.d, 'keys', 'cover.pem'));
  });

  it('key server: a 0644 key or tlsKeys key is refused naming the file; the config field accepts it', async () => {
    const f = await tlsFiles('keyserver', 0o644);
    const raw = { listen: '127.0.0.1:0', cert: 'cover.crt', key: 'cover.key', ca: 'ca.pem', echKeys: 'keys', clients: [{ name: 'edge.test', ech: ['*'] }] };
    expectNamesFix(await refusal(keyServerOptionsFromConfig(validateKeyServerConfig(raw, f.d))), f.key);
    const ok = await tlsFiles('keyserver-ok', 0o600);
    const tlsKey = join(ok.d, 'tls.key');
    await writeFile(tlsKey, pki.issue(['alpha.example']).key, { mode: 0o640 });
    await chmod(tlsKey, 0o640);
    const withTls = { ...raw, tlsKeys: [{ cert: 'cover.crt', key: 'tls.key' }] };
    expectNamesFix(await refusal(keyServerOptionsFromConfig(validateKeyServerConfig(withTls, ok.d))), tlsKey);
    expect((await keyServerOptionsFromConfig(validateKeyServerConfig(raw, ok.d))).key).toMatch(/PRIVATE KEY/);
    const allowed = await keyServerOptionsFromConfig(validateKeyServerConfig({ ...raw, allowInsecureKeyFilePermissions: true }, f.d));
    expect(allowed.key).toMatch(/PRIVATE KEY/);
    expect(allowed.echKeys?.size).toBe(1);
  });

  it('`ech-server serve` with a 0644 key: one line naming the file and the fix, non-zero exit, no stack trace', async () => {
    const f = await tlsFiles('serve-cli', 0o644);
    const file = join(f.d, 'serve.json');
    await writeFile(file, JSON.stringify(serveConfig()));
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      execFile(process.execPath, [BIN, 'serve', '--config', file], { timeout: 20_000 }, (err, _out, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? null) : 0, stderr }),
      );
    });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toContain(`chmod 600 ${f.key}`);
    expect(r.stderr).not.toMatch(/\n\s+at /);
  }, 30_000);
});
