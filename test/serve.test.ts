// @module-tag peer-boringssl
// `ech-server serve` as a user runs it (a child process), against BoringSSL
// as the ECH client: accepted with the inner certificate and page, stale
// config → retry_configs → accepted, GREASE, HRR; and config errors that
// name their field.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn } from 'node:child_process';
import { closeSync, constants, openSync, writeSync } from 'node:fs';
import { mkdtemp, rm, unlink, writeFile } from 'node:fs/promises';
import { createConnection, createServer } from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { readFirstHandshakeMessage } from '../src/tls/record.js';
import { decodeClientHello, findExtension } from '../src/tls/client-hello.js';
import { decodeServerName } from '../src/tls/extensions.js';
import { ExtensionType } from '../src/tls/constants.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { generateEchKey } from '../src/keys/generate.js';
import { loadEchKeyDirectory } from '../src/keys/files.js';
import { toBase64 } from '../src/wire/bytes.js';
import { connectTls13 } from '../src/tls13/client-socket.js';
import { groupName } from '../src/tls13/groups.js';
import { buildHarness, runClient } from './peers/boringssl.js';
import { makePki, type TestPki } from './tls13-helpers.js';
import { recordingRelay, startServe, type ServeProcess } from './helpers/serve-process.js';
import { configIdsOf, greaseOutcome } from './helpers/grease.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
let dir: string;
let pki: TestPki;
let caFile: string;
let listB64: string;
let baseConfig: Record<string, unknown>;

beforeAll(async () => {
  await buildHarness();
  dir = await mkdtemp(join(tmpdir(), 'ech-serve-'));
  pki = makePki();
  caFile = join(pki.dir, 'ca.pem');
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  const beta = pki.leaf('rsa', ['beta.example']);
  const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys'), '--max-name-length', '16']);
  listB64 = JSON.parse(keygen.stdout).echConfigList;
  baseConfig = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [
      { serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' },
      { serverName: 'beta.example', cert: beta.certPath, key: beta.keyPath, respond: 'ech-status' },
    ],
  };
}, 120_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;
const body = (response: string | null) => JSON.parse(response!.slice(response!.indexOf('\r\n\r\n') + 4));

async function withServe<T>(extra: Record<string, unknown>, fn: (s: ServeProcess) => Promise<T>): Promise<T> {
  const s = await startServe(dir, { ...baseConfig, ...extra });
  try {
    return await fn(s);
  } finally {
    expect(await s.stop(), s.output()).toBe(0);
  }
}

describe('ech-server serve with BoringSSL', () => {
  it('accepts ECH: inner certificate verified, ech-status page reports the inner name, the wire shows only the public name', async () => {
    await withServe({}, async (s) => {
      const relay = await recordingRelay(s.port);
      try {
        const r = await runClient({ port: relay.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, alpn: ['http/1.1'], send: GET('alpha.example'), read: true });
        expect(r.error).toBeNull();
        expect(r.echAccepted).toBe(true);
        expect(r.verified).toBe(true);
        expect(r.peerCertSubject).toMatch(/alpha\.example/);
        expect(body(r.response)).toMatchObject({ site: 'alpha.example', echStatus: 'accepted', innerServerName: 'alpha.example', outerServerName: 'cover.example', helloRetryRequest: false });
        const wire = relay.clientBytes();
        const hello = decodeClientHello(readFirstHandshakeMessage(new Uint8Array(wire))!.message.body);
        expect(decodeServerName(findExtension(hello.extensions, ExtensionType.server_name)!.data)).toBe('cover.example');
        expect(wire.includes(Buffer.from('alpha.example'))).toBe(false);
      } finally {
        await relay.close();
      }
    });
  });

  it('a stale config is rejected with the current retry_configs, the public-name certificate verifies, and the retry is accepted', async () => {
    const stale = toBase64(encodeEchConfigList([generateEchKey({ publicName: 'cover.example' }).config]));
    const current = toBase64((await loadEchKeyDirectory(join(dir, 'keys'))).retryConfigList()!);
    await withServe({}, async (s) => {
      const r = await runClient({ port: s.port, sni: 'beta.example', echConfigList: stale, ca: caFile, retry: true, send: GET('beta.example'), read: true });
      expect(r.first!.echRejected).toBe(true);
      expect(r.first!.verified).toBe(true);
      expect(r.firstRetryConfigs).toBe(current);
      expect(r.echAccepted).toBe(true);
      expect(body(r.response)).toMatchObject({ site: 'beta.example', echStatus: 'accepted', innerServerName: 'beta.example' });
    });
  });

  it('GREASE completes without ECH and the page says so', async () => {
    await withServe({}, async (s) => {
      const r = await runClient({ port: s.port, sni: 'alpha.example', grease: true, ca: caFile, send: GET('alpha.example'), read: true });
      expect(r.handshake).toBe(true);
      expect(r.echAccepted).toBe(false);
      const page = body(r.response);
      expect(page).toMatchObject({ site: 'alpha.example', innerServerName: null });
      greaseOutcome(page, configIdsOf(listB64));
    });
  });

  it('restricted to secp256r1: HelloRetryRequest, and ECH is still accepted', async () => {
    await withServe({ groups: ['secp256r1'] }, async (s) => {
      const r = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, groups: ['X25519', 'P-256'], send: GET('alpha.example'), read: true });
      expect(r.hrr).toBe(true);
      expect(r.echAccepted).toBe(true);
      expect(body(r.response)).toMatchObject({ echStatus: 'accepted', innerServerName: 'alpha.example', helloRetryRequest: true, group: 'prime256v1' });
    });
  });

  it('config errors name the field and nothing listens', async () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ listen: 'nowhere' }, /listen: 'nowhere' is not "host:port"/],
      [{ keys: 'missing-dir' }, /keys: cannot read key directory/],
      [{ groups: ['x448'] }, /groups\[0\]: must be one of/],
      [{ routes: [{ serverName: 'a.example', cert: 'nope.pem', key: 'nope.key', respond: 'ech-status' }] }, /routes\[0\]\.(cert|key): cannot read/],
      [{ routes: [{ serverName: 'a.example', cert: 'x', key: 'y' }] }, /routes\[0\]: needs one of respond, passthrough, forward, forwardTls/],
      [{ bogus: 1 }, /bogus: is not a known field/],
      [{ routes: [{ serverName: 'a.example', cert: 'x', key: 'y', respond: 'ech-status', forwardGrease: true }] }, /routes\[0\]\.forwardGrease: only applies to passthrough routes/],
    ];
    for (const [extra, re] of cases) {
      const file = join(dir, 'bad.json');
      await writeFile(file, JSON.stringify({ ...baseConfig, ...extra }));
      const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file]).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: number; stderr: string }) => e,
      );
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr).toMatch(re);
    }
  });

  it('--check loads and checks everything without listening: exit 0 with a JSON line, or exit 1 naming the fault', async () => {
    const port = await new Promise<number>((res) => {
      const probe = createServer();
      probe.listen(0, '127.0.0.1', () => {
        const p = (probe.address() as { port: number }).port;
        probe.close(() => res(p));
      });
    });
    const checkRun = async (cfg: Record<string, unknown>) => {
      const file = join(dir, 'check.json');
      await writeFile(file, JSON.stringify(cfg));
      return promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file, '--check'], { timeout: 20_000 }).then(
        (x) => ({ code: 0, stdout: x.stdout, stderr: x.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => e,
      );
    };
    const ok = await checkRun({ ...baseConfig, listen: `127.0.0.1:${port}`, admin: '127.0.0.1:0' });
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ ok: true, keys: 1, routes: ['alpha.example', 'beta.example'], listen: `127.0.0.1:${port}`, admin: '127.0.0.1:0' });
    expect(ok.stderr).toBe('');
    // nothing was bound: the port is still free
    await new Promise<void>((res, rej) => {
      const s = createServer();
      s.once('error', rej);
      s.listen(port, '127.0.0.1', () => s.close(() => res()));
    });
    const routes = baseConfig['routes'] as Array<Record<string, unknown>>;
    const alpha = routes[0]!;
    const beta = routes[1]!;
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ routes: [{ ...alpha, serverName: 'gamma.example' }] }, /^ech-server serve: routes\[0\]\.cert: \S+ does not cover gamma\.example\n$/],
      [{ routes: [{ ...alpha, key: beta['key'] }] }, /private key does not match the certificate/],
      [{ routes: [alpha, { ...beta, key: join(dir, 'missing.key') }] }, /^ech-server serve: routes\[1\]\.key: cannot read \S+missing\.key: ENOENT\n$/],
      [{ publicName: { cert: alpha['cert'], key: alpha['key'] } }, /^ech-server serve: publicName\.cert: \S+ does not cover cover\.example, the public_name of ECH config \d+\n$/],
      [{ listen: '127.0.0.1:99999' }, /listen: port 99999 is out of range/],
      [{ keys: 'no-such-keys' }, /keys: cannot read key directory/],
    ];
    for (const [extra, re] of cases) {
      const r = await checkRun({ ...baseConfig, ...extra });
      expect(r.code, JSON.stringify(extra)).toBe(1);
      expect(r.stderr, JSON.stringify(extra)).toMatch(re);
      expect(r.stdout).toBe('');
    }
    // a wildcard route is covered by a wildcard certificate
    const wild = pki.leaf('ec', ['*.legacy.example']);
    const w = await checkRun({ ...baseConfig, routes: [{ serverName: '*.legacy.example', cert: wild.certPath, key: wild.keyPath, respond: 'ech-status' }] });
    expect(w.code, w.stderr).toBe(0);
  });

  it('a SIGHUP while serve starts does not kill it: the handlers are in place before the listening line, and the reload runs once it listens', async () => {
    // The configuration file is a FIFO: serve blocks reading it, its start
    // under way. A writer can open a FIFO (O_NONBLOCK) only once a reader
    // has it open, so the test knows when serve is reading. SIGHUP's
    // default action would end the process.
    const fifo = join(dir, `fifo-${process.pid}-${Date.now()}.json`);
    await promisify(execFile)('mkfifo', ['-m', '600', fifo]);
    const config = JSON.stringify({ ...baseConfig, keys: join(dir, 'keys') });
    const openWriter = async () => {
      for (let i = 0; i < 200; i++) {
        try {
          return openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code !== 'ENXIO') throw e;
          await new Promise((r) => setTimeout(r, 50));
        }
      }
      throw new Error('serve never opened its configuration FIFO');
    };
    const child = spawn(process.execPath, [BIN, 'serve', '--config', fifo], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const until = async (re: RegExp) => {
      for (let i = 0; i < 300 && !re.test(out) && child.exitCode === null && child.signalCode === null; i++) await new Promise((r) => setTimeout(r, 50));
      expect(out).toMatch(re);
    };
    try {
      const fd = await openWriter();
      child.kill('SIGHUP');
      await new Promise((r) => setTimeout(r, 300));
      expect(child.signalCode, out).toBe(null);
      writeSync(fd, config);
      closeSync(fd);
      await until(/"listening":"/);
      // The SIGHUP that came during the start reloads the file now.
      const again = await openWriter();
      writeSync(again, config);
      closeSync(again);
      await until(/"event":"reloaded"/);
      child.kill('SIGTERM');
      expect(await exited, out).toBe(0);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
      await unlink(fifo).catch(() => undefined);
    }
  });

  it('SIGHUP with a broken config file (invalid JSON, unknown field, missing file): reload_failed is logged and counted, the old configuration keeps serving', async () => {
    // drainTimeoutMs: a stop under load does not wait the default 10 s for
    // the last client's FIN (serve-process kills at 5 s).
    await withServe({ admin: '127.0.0.1:0', drainTimeoutMs: 500 }, async (s) => {
      const adminPort = Number(/"admin":(\d+)/.exec(s.output())![1]);
      const metric = async (result: string) => {
        const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
        const m = new RegExp(`^ech_reloads_total\\{result="${result}"\\} (\\d+)$`, 'm').exec(text);
        return m ? Number(m[1]) : 0;
      };
      const events = (name: string) =>
        s
          .output()
          .split('\n')
          .filter((l) => l.startsWith('{"time"'))
          .map((l) => JSON.parse(l) as Record<string, unknown>)
          .filter((e) => e['event'] === name);
      const hup = async (name: string, n: number) => {
        s.child.kill('SIGHUP');
        const deadline = Date.now() + 10_000;
        while (events(name).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
        expect(events(name).length, s.output()).toBe(n);
        return events(name)[n - 1]!;
      };
      const stillServes = async () => {
        const r = await runClient({ port: s.port, sni: 'alpha.example', echConfigList: listB64, ca: caFile, send: GET('alpha.example'), read: true });
        expect(r.echAccepted).toBe(true);
        expect(body(r.response)).toMatchObject({ site: 'alpha.example', innerServerName: 'alpha.example' });
      };
      const good = JSON.stringify({ ...baseConfig, admin: '127.0.0.1:0', drainTimeoutMs: 500, keys: join(dir, 'keys') });

      await writeFile(s.file, '{ "listen": ');
      expect((await hup('reload_failed', 1))['error']).toMatch(/is not valid JSON/);
      expect(await metric('error')).toBe(1);
      await stillServes();

      await writeFile(s.file, JSON.stringify({ ...JSON.parse(good), bogus: true }));
      expect((await hup('reload_failed', 2))['error']).toMatch(/bogus: is not a known field/);
      expect(await metric('error')).toBe(2);
      await stillServes();

      await unlink(s.file);
      expect((await hup('reload_failed', 3))['error']).toMatch(/cannot read .*ENOENT/);
      expect(await metric('error')).toBe(3);
      await stillServes();

      await writeFile(s.file, good);
      await hup('reloaded', 1);
      expect(await metric('ok')).toBe(1);
      expect(await metric('error')).toBe(3);
      await stillServes();
    });
  });

  it('handshake logs name the key exchange group (X25519MLKEM768 when the client offers it, TLS 1.2 too); "groups" takes x25519mlkem768', async () => {
    const handshakes = (out: string) =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{"time"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e['event'] === 'handshake');
    const waitFor = async (s: ServeProcess, n: number) => {
      const deadline = Date.now() + 10_000;
      while (handshakes(s.output()).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return handshakes(s.output());
    };
    const hybrid = (port: number) =>
      new Promise<string | undefined>((res, rej) => {
        const c = connectTls13({ port, host: '127.0.0.1', servername: 'alpha.example', ca: pki.caPem, ecdhCurve: 'X25519MLKEM768:X25519' });
        c.on('secureConnect', () => {
          const g = c.handshake ? groupName(c.handshake.group) : undefined;
          c.end();
          setTimeout(() => c.destroy(), 2000).unref();
          res(g);
        });
        c.on('error', rej);
      });
    // No X25519MLKEM768 (Node 24's client offers it by default); P-256 too, or
    // a TLS 1.2 server may not use its P-256 ECDSA certificate.
    const node = (port: number, extra: tls.ConnectionOptions = {}) =>
      new Promise<void>((res, rej) => {
        const c = tls.connect({ port, host: '127.0.0.1', servername: 'alpha.example', ca: pki.caPem, ecdhCurve: 'X25519:P-256', ...extra }, () => {
          c.end();
          setTimeout(() => c.destroy(), 2000).unref();
          res();
        });
        c.on('error', rej);
      });
    await withServe({ groups: ['x25519mlkem768', 'x25519', 'secp256r1'], drainTimeoutMs: 500 }, async (s) => {
      expect(await hybrid(s.port)).toBe('X25519MLKEM768');
      await node(s.port);
      await node(s.port, { maxVersion: 'TLSv1.2' });
      const hs = await waitFor(s, 3);
      // node:tls does not report the group on the server side of TLS 1.2: null.
      expect(hs.map((h) => h['group'])).toEqual(['X25519MLKEM768', 'X25519', null]);
      expect(hs[2]).toMatchObject({ protocol: 'TLSv1.2', alpn: null });
    });
    const file = join(dir, 'bad-groups.json');
    await writeFile(file, JSON.stringify({ ...baseConfig, groups: ['kyber'] }));
    const r = await promisify(execFile)(process.execPath, [BIN, 'serve', '--config', file, '--check']).then(
      () => ({ code: 0, stderr: '' }),
      (e: { code: number; stderr: string }) => e,
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/groups\[0\]: must be one of x25519mlkem768, x25519, secp256r1/);
  }, 60_000);

  it('connection logs carry the client address and port (unless logClientAddress is false); alpn is a string or null', async () => {
    const connect = (port: number, alpn?: string[]) =>
      new Promise<number>((res, rej) => {
        const c = tls.connect({ port, host: '127.0.0.1', servername: 'alpha.example', ca: pki.caPem, ...(alpn ? { ALPNProtocols: alpn } : {}) }, () => {
          // end(), not destroy(): the Finished still has to reach the server
          const local = c.localPort!;
          c.end();
          setTimeout(() => c.destroy(), 2000).unref();
          res(local);
        });
        c.on('error', rej);
      });
    const garbage = (port: number) =>
      new Promise<number>((res) => {
        const c = createConnection(port, '127.0.0.1');
        let local = 0;
        c.on('connect', () => {
          local = c.localPort!;
          c.write('GET / HTTP/1.1\r\n\r\n');
        });
        c.on('error', () => undefined);
        c.resume(); // read the alert, so that 'end' and 'close' come
        c.on('close', () => res(local));
      });
    const logs = (out: string, name: string) =>
      out
        .split('\n')
        .filter((l) => l.startsWith('{"time"'))
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((e) => e['event'] === name);
    const waitFor = async (s: ServeProcess, name: string, n: number) => {
      const deadline = Date.now() + 10_000;
      while (logs(s.output(), name).length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      return logs(s.output(), name);
    };
    await withServe({ drainTimeoutMs: 100 }, async (s) => {
      const plain = await connect(s.port);
      const withAlpn = await connect(s.port, ['http/1.1']);
      const hs = await waitFor(s, 'handshake', 2);
      expect(hs, s.output()).toHaveLength(2);
      expect(hs[0]).toMatchObject({ status: 'not-offered', remote: '127.0.0.1', remotePort: plain, alpn: null });
      expect(hs[1]).toMatchObject({ remote: '127.0.0.1', remotePort: withAlpn, alpn: 'http/1.1' });
      const bad = await garbage(s.port);
      const errs = await waitFor(s, 'connection_error', 1);
      expect(errs[0]).toMatchObject({ remote: '127.0.0.1', remotePort: bad });
    });
    await withServe({ logClientAddress: false, drainTimeoutMs: 100 }, async (s) => {
      await connect(s.port);
      await garbage(s.port);
      const hs = await waitFor(s, 'handshake', 1);
      const errs = await waitFor(s, 'connection_error', 1);
      expect(hs).toHaveLength(1);
      expect(errs).toHaveLength(1);
      for (const e of [...hs, ...errs]) {
        expect(e).not.toHaveProperty('remote');
        expect(e).not.toHaveProperty('remotePort');
      }
      expect(hs[0]!['alpn']).toBeNull();
    });
  }, 60_000);
});
