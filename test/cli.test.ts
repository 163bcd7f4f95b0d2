// The ech-server command as a user runs it: the built binary in a child
// process (npm test builds first).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { ContentType } from '../src/tls/constants.js';
import { encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { writeRecords } from '../src/tls/record.js';
import { buildClientHello, buildEchClientHello, buildGreaseEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decodeEchConfigList } from '../src/ech/config.js';
import { fromBase64 } from '../src/wire/bytes.js';
import { loadEchKeyDirectory } from '../src/keys/files.js';
import { x25519Share } from './helpers/reference-keys.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const run = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, stdout: x.stdout, stderr: x.stderr };
  }
};

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('ech-server CLI', () => {
  it('every subcommand has --help, and unknown ones fail with usage', async () => {
    for (const c of ['keygen', 'dns', 'inspect', 'serve', 'check', 'rotate', 'keyserver', 'demo']) {
      const r = await run(c, '--help');
      expect(r.code, c).toBe(0);
      expect(r.stdout).toMatch(new RegExp(`^ech-server ${c}`));
    }
    const bad = await run('frobnicate');
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/unknown command 'frobnicate'/);
    const missing = await run('keygen');
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--public-name is required/);
  });

  it('keygen writes a 0600 PEM file and prints its ECHConfigList; ids do not collide', async () => {
    const keys = join(dir, 'keys');
    const a = await run('keygen', '--public-name', 'cover.example', '--out', keys);
    expect(a.code, a.stderr).toBe(0);
    const ja = JSON.parse(a.stdout);
    expect(ja).toMatchObject({ publicName: 'cover.example', kem: 'x25519' });
    expect((await stat(ja.file)).mode & 0o777).toBe(0o600);
    const cfg = decodeEchConfigList(fromBase64(ja.echConfigList)).configs[0]!;
    expect(cfg.configId).toBe(ja.configId);
    const b = JSON.parse((await run('keygen', '--public-name', 'cover.example', '--kem', 'p256', '--out', keys)).stdout);
    expect(b.configId).not.toBe(ja.configId);
    const set = await loadEchKeyDirectory(keys);
    expect(set.size).toBe(2);
    const bad = await run('keygen', '--public-name', '10.1.2.3', '--out', keys);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/IPv4/);
  });

  it('dns prints the HTTPS record, with _PORT._https and an explicit target off 443', async () => {
    const keys = join(dir, 'dnskeys');
    const k = JSON.parse((await run('keygen', '--public-name', 'cover.example', '--out', keys)).stdout);
    const r443 = await run('dns', '--keys', keys, '--name', 'secret.example', '--alpn', 'h2,http/1.1');
    expect(r443.stdout.trim()).toBe(`secret.example. 300 IN HTTPS 1 . alpn="h2,http/1.1" ech=${k.echConfigList}`);
    const r8443 = await run('dns', '--keys', keys, '--name', 'secret.example', '--port', '8443');
    expect(r8443.stdout.trim()).toBe(`_8443._https.secret.example. 300 IN HTTPS 1 secret.example. port=8443 ech=${k.echConfigList}`);
    expect((await run('dns', '--keys', keys)).code).toBe(2);
  });

  it('inspect reports accepted, rejected, not-offered and errors with their alert', async () => {
    const keys = join(dir, 'ikeys');
    await run('keygen', '--public-name', 'cover.example', '--out', keys);
    const set = await loadEchKeyDirectory(keys);
    const config = set.retryConfigs()[0]!;
    const write = async (name: string, msg: Uint8Array, frag = 16384) => {
      const p = join(dir, name);
      await writeFile(p, writeRecords(ContentType.handshake, msg, 0x0301, frag));
      return p;
    };
    const ech = await buildEchClientHello({ serverName: 'hidden.example', alpn: ['h2'], keyShares: [x25519Share()] }, { config, sealer: createEchSealer });
    const acc = await run('inspect', '--keys', keys, await write('acc.bin', ech.outerMessage, 100));
    expect(acc.code).toBe(0);
    expect(JSON.parse(acc.stdout)).toMatchObject({ status: 'accepted', outerServerName: 'cover.example', innerServerName: 'hidden.example', configId: config.configId, alpn: ['h2'] });
    const grease = encodeClientHelloMessage(buildGreaseEchClientHello({ serverName: 'plain.example', keyShares: [x25519Share()] }));
    const rej = JSON.parse((await run('inspect', '--keys', keys, await write('rej.bin', grease))).stdout);
    expect(rej.status).toBe('rejected');
    expect(rej.outerServerName).toBe('plain.example');
    const plain = encodeClientHelloMessage(buildClientHello({ serverName: 'plain.example', keyShares: [x25519Share()] }));
    expect(JSON.parse((await run('inspect', '--keys', keys, await write('no.bin', plain))).stdout)).toEqual({ status: 'not-offered', outerServerName: 'plain.example' });
    const truncated = await run('inspect', '--keys', keys, await write('trunc.bin', ech.outerMessage.subarray(0, 50)));
    expect(truncated.code).toBe(1);
    expect(JSON.parse(truncated.stdout)).toMatchObject({ status: 'error', alert: 'decode_error' });
    const p = join(dir, 'http.bin');
    await writeFile(p, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    const http = await run('inspect', '--keys', keys, p);
    expect(http.code).toBe(1);
    expect(JSON.parse(http.stdout)).toMatchObject({ status: 'error', alert: 'decode_error' });
  });

  it('demo runs on embedded defaults and shows only the cover name on the wire', async () => {
    const r = await run('demo', '--dir', join(dir, 'demo'), '--once');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ECH to alpha\.example\s+\| cover\.example\s+\|.*\| accepted, inner alpha\.example/);
    expect(r.stdout).toMatch(/GREASE ECH .*grease/);
  }, 60_000);
});
