// @module-tag peer-boringssl
// `ech-server serve` with a `rotation` section, as a process on the real
// clock (a short period): keys are made, published (file publisher), and the
// running server's key set follows without a restart. A BoringSSL client
// with the published config is accepted; once the first key is past its
// grace period, a client holding it is rejected with the published list as
// retry_configs and succeeds on retry.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { startServe, type ServeProcess } from './helpers/serve-process.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let pki: TestPki;
let serve: ServeProcess;

const zoneList = async (): Promise<string | undefined> => {
  try {
    return /ech=(\S+)/.exec(await readFile(join(dir, 'https.zone'), 'utf8'))?.[1];
  } catch {
    return undefined;
  }
};

async function until<T>(f: () => Promise<T | undefined>, what: string, ms = 20_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await f();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-serve-rotation-'));
  pki = makePki();
  const cover = pki.leaf('ec', ['cover.example']);
  const secret = pki.leaf('ec', ['secret.example']);
  serve = await startServe(dir, {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'secret.example', cert: secret.certPath, key: secret.keyPath, respond: 'ech-status' }],
    rotation: {
      publicName: 'cover.example',
      period: 4,
      ttl: 1,
      margin: 1,
      names: ['secret.example'],
      stateFile: 'rotation.json',
      publisher: { type: 'file', prefix: 'https' },
    },
  });
}, 60_000);

afterAll(async () => {
  if (serve) expect(await serve.stop()).toBe(0);
  pki?.cleanup();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const GET = 'GET / HTTP/1.1\r\nHost: secret.example\r\nAccept: application/json\r\nConnection: close\r\n\r\n';
const client = (echConfigList: string, retry = false) =>
  runClient({ port: serve.port, sni: 'secret.example', echConfigList, ca: join(pki.dir, 'ca.pem'), retry, send: GET, read: true });

describe('serve with rotation', () => {
  it('publishes its first key and accepts clients using it', async () => {
    const first = await until(zoneList, 'the first published key');
    const r = await client(first);
    expect(r.error).toBeNull();
    expect(r.echAccepted).toBe(true);
  });

  it('rotates without a restart: the old key ends with retry_configs = the published list, and the retry is accepted', async () => {
    const first = (await zoneList())!;
    const second = await until(async () => {
      const z = await zoneList();
      return z && z !== first ? z : undefined;
    }, 'a rotation');
    expect((await client(second)).echAccepted).toBe(true);
    // past ttl + margin the first key is gone: rejected, then retried
    const r = await until(async () => {
      const before = await zoneList();
      const x = await client(first, true);
      return x.retried ? { x, before, after: await zoneList() } : undefined;
    }, 'the first key to retire');
    expect(r.x.first!.echRejected).toBe(true);
    expect([r.before, r.after]).toContain(r.x.firstRetryConfigs);
    expect(r.x.echAccepted).toBe(true);
    expect(serve.output()).toMatch(/"event":"keys_rotated"/);
  }, 40_000);

  it('a rotation section with keyless, or with a bad field, is refused before listening', async () => {
    const file = join(dir, 'bad.json');
    await writeFile(file, JSON.stringify({ listen: '127.0.0.1:0', keys: 'keys', publicName: { cert: 'c', key: 'k' }, rotation: { publicName: '10.0.0.1', stateFile: 's' } }));
    const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file]).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/rotation\.publicName/);
  });
});
