// Errors an operator meets, with the built CLI in a child process: OS errors
// (a missing input, an output that cannot be created, a busy port) are one
// line naming the path or port with a distinct exit code — never a stack
// trace or "internal error" — a busy admin port leaves nothing listening,
// unexpected positional arguments are usage errors, and --version prints the
// package's version.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, type ExecFileOptions } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EchError } from '../src/wire/alert.js';
import { CliOutputError, ExitCode, describeCliError } from '../src/cli/errors.js';
import { makePki, type TestPki } from './tls13-helpers.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const PKG = fileURLToPath(new URL('../package.json', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(args: string[], options: ExecFileOptions = {}): Promise<Run> {
  return new Promise((res) => {
    execFile(process.execPath, [BIN, ...args], { timeout: 20_000, encoding: 'utf8', ...options }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
      res({ code: typeof code === 'number' ? code : null, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** One line on stderr, no stack trace, not an internal error. */
function oneLine(r: Run): void {
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
}

/** A TCP port held by this test while `fn` runs. */
async function holdPort<T>(fn: (port: number) => Promise<T>): Promise<T> {
  const server: Server = createServer((s) => s.destroy());
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  try {
    return await fn((server.address() as { port: number }).port);
  } finally {
    await new Promise<void>((res) => server.close(() => res()));
  }
}

/** A port free right now. */
async function freePort(): Promise<number> {
  return holdPort(async (p) => p);
}

let dir: string;
let pki: TestPki;
let config: Record<string, unknown>;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-cli-errors-'));
  pki = makePki();
  const cover = pki.leaf('ec', ['cover.example']);
  const alpha = pki.leaf('ec', ['alpha.example']);
  const k = await run(['keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys')]);
  expect(k.code, k.stderr).toBe(0);
  config = {
    listen: '127.0.0.1:0',
    keys: 'keys',
    publicName: { cert: cover.certPath, key: cover.keyPath },
    routes: [{ serverName: 'alpha.example', cert: alpha.certPath, key: alpha.keyPath, respond: 'ech-status' }],
  };
}, 60_000);
afterAll(async () => {
  pki?.cleanup();
  await rm(dir, { recursive: true, force: true });
});

async function configFile(extra: Record<string, unknown>): Promise<string> {
  const file = join(dir, `serve-${Math.random().toString(36).slice(2)}.json`);
  await writeFile(file, JSON.stringify({ ...config, ...extra }));
  return file;
}

describe('exit codes of OS errors', () => {
  it('the mapping: input 66, listen 69, output 73, other I/O 74, anything else is not an OS error', () => {
    const errno = (code: string, syscall: string, extra: Record<string, unknown> = {}) => Object.assign(new Error(code), { code, syscall, ...extra });
    expect(describeCliError(errno('ENOENT', 'open', { path: '/x/in.bin' }))).toEqual({ message: 'cannot read /x/in.bin: no such file or directory (ENOENT)', exitCode: 66 });
    expect(describeCliError(errno('EACCES', 'scandir', { path: '/etc/ech' }))?.exitCode).toBe(ExitCode.noInput);
    expect(describeCliError(errno('EROFS', 'mkdir', { path: '/ro/keys' }))).toEqual({ message: 'cannot create /ro/keys: read-only file system (EROFS)', exitCode: 73 });
    expect(describeCliError(new CliOutputError('/k/a.pem', errno('EACCES', 'open', { path: '/k/a.pem.tmp' })))).toEqual({ message: 'cannot create /k/a.pem: permission denied (EACCES)', exitCode: 73 });
    expect(describeCliError(new CliOutputError('/k/a.pem', errno('ENOSPC', 'write')))?.exitCode).toBe(ExitCode.ioError);
    expect(describeCliError(errno('EADDRNOTAVAIL', 'listen', { address: '192.0.2.1', port: 443 }))).toEqual({ message: 'cannot listen on 192.0.2.1:443: address not available (EADDRNOTAVAIL)', exitCode: 69 });
    expect(describeCliError(errno('EADDRINUSE', 'listen', { address: '::1', port: 8443, field: 'admin' }))?.message).toBe('admin: cannot listen on [::1]:8443: address already in use (EADDRINUSE)');
    const wrapped = new EchError('ERR_KEY_FILE', 'internal_error', 'cannot read key directory /nope: ENOENT', { cause: errno('ENOENT', 'scandir', { path: '/nope' }) });
    expect(describeCliError(wrapped)).toEqual({ message: 'cannot read key directory /nope: ENOENT', exitCode: 66 });
    expect(describeCliError(new EchError('ERR_CONFIG', 'internal_error', 'listen: bad'))).toBeUndefined();
    expect(describeCliError(new TypeError('x is undefined'))).toBeUndefined();
  });

  it('inspect on a missing file: exit 66, one line naming the file', async () => {
    const missing = join(dir, 'no-such-capture.bin');
    const r = await run(['inspect', '--keys', join(dir, 'keys'), missing]);
    expect(r.code).toBe(66);
    oneLine(r);
    expect(r.stderr).toBe(`ech-server inspect: cannot read ${missing}: no such file or directory (ENOENT)\n`);
    const keysMissing = await run(['inspect', '--keys', join(dir, 'no-keys'), missing]);
    expect(keysMissing.code).toBe(66);
    oneLine(keysMissing);
    expect(keysMissing.stderr).toContain(join(dir, 'no-keys'));
  });

  it('serve (and serve --check) with a missing config file: exit 66, one line naming the file', async () => {
    const missing = join(dir, 'no-such-serve.json');
    for (const extra of [[], ['--check']]) {
      const r = await run(['serve', '--config', missing, ...extra]);
      expect(r.code, r.stderr).toBe(66);
      oneLine(r);
      expect(r.stderr).toBe(`ech-server serve: (file): cannot read ${missing}: ENOENT\n`);
    }
  });

  it('keygen under a file (ENOTDIR): exit 73, one line naming the path', async () => {
    const file = join(dir, 'a-file');
    await writeFile(file, 'not a directory');
    const r = await run(['keygen', '--public-name', 'cover.example', '--out', join(file, 'keys')]);
    expect(r.code).toBe(73);
    oneLine(r);
    expect(r.stderr).toBe(`ech-server keygen: cannot create ${join(file, 'keys')}: not a directory (ENOTDIR)\n`);
    const onFile = await run(['keygen', '--public-name', 'cover.example', '--out', file]);
    expect(onFile.code).toBe(73);
    expect(onFile.stderr).toMatch(/cannot create .*a-file: not a directory \(ENOTDIR\)/);
  });

  it('keygen into a directory it cannot write (EACCES): exit 73, one line naming the path', async () => {
    // root writes anywhere: run the CLI as nobody (uid 65534) into a
    // directory owned by root, mode 0755; as another user, drop write permission.
    const locked = join(dir, 'locked');
    await mkdir(locked, { mode: 0o755 });
    await chmod(dir, 0o755);
    const asRoot = process.getuid?.() === 0;
    if (!asRoot) await chmod(locked, 0o555);
    const opts = asRoot ? { uid: 65534, gid: 65534, cwd: tmpdir() } : {};
    try {
      const sub = await run(['keygen', '--public-name', 'cover.example', '--out', join(locked, 'keys')], opts);
      expect(sub.code, sub.stderr).toBe(73);
      oneLine(sub);
      expect(sub.stderr).toBe(`ech-server keygen: cannot create ${join(locked, 'keys')}: permission denied (EACCES)\n`);
      const file = await run(['keygen', '--public-name', 'cover.example', '--out', locked], opts);
      expect(file.code, file.stderr).toBe(73);
      oneLine(file);
      expect(file.stderr).toMatch(new RegExp(`^ech-server keygen: cannot create ${locked}/ech-cover\\.example-[0-9a-f]{2}\\.pem: permission denied \\(EACCES\\)\\n$`));
    } finally {
      await chmod(locked, 0o755);
      await chmod(dir, 0o700);
    }
  });

  it('serve on a busy port: exit 69, one line naming the port', async () => {
    await holdPort(async (busy) => {
      const r = await run(['serve', '--config', await configFile({ listen: `127.0.0.1:${busy}` })]);
      expect(r.code).toBe(69);
      oneLine(r);
      expect(r.stderr).toBe(`ech-server serve: listen: cannot listen on 127.0.0.1:${busy}: address already in use (EADDRINUSE)\n`);
      expect(r.stdout).not.toMatch(/listening/);
    });
  });

  it('serve with a busy admin port: exit 69 and nothing left listening (the TLS port is closed again)', async () => {
    const tlsPort = await freePort();
    await holdPort(async (busy) => {
      const started = Date.now();
      const r = await run(['serve', '--config', await configFile({ listen: `127.0.0.1:${tlsPort}`, admin: `127.0.0.1:${busy}` })]);
      expect(r.code, r.stderr).toBe(69);
      expect(Date.now() - started).toBeLessThan(15_000);
      expect(r.stderr).toContain(`ech-server serve: admin: cannot listen on 127.0.0.1:${busy}: address already in use (EADDRINUSE)\n`);
      expect(r.stderr).not.toMatch(/internal error|\n\s+at /);
      expect(r.stdout).not.toMatch(/listening/);
    });
    // the TLS port is free again
    const again = createServer();
    await new Promise<void>((res, rej) => {
      again.once('error', rej);
      again.listen(tlsPort, '127.0.0.1', res);
    });
    await new Promise<void>((res) => again.close(() => res()));
  });

  it('demo --port on a busy port: exit 69, one line naming the port', async () => {
    await holdPort(async (busy) => {
      const r = await run(['demo', '--dir', join(dir, 'demo'), '--port', String(busy), '--once']);
      expect(r.code).toBe(69);
      expect(r.stderr).toBe(`ech-server demo: cannot listen on 127.0.0.1:${busy}: address already in use (EADDRINUSE)\n`);
    });
  }, 60_000);

  it('--help lists the exit codes', async () => {
    const r = await run(['--help']);
    expect(r.code).toBe(0);
    for (const c of ['66', '69', '70', '73', '74']) expect(r.stdout).toMatch(new RegExp(`^ +${c} `, 'm'));
  });
});

describe('arguments', () => {
  it('--version prints the package version', async () => {
    const { version } = JSON.parse(await readFile(PKG, 'utf8')) as { version: string };
    const r = await run(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${version}\n`);
  });

  it('an unexpected positional argument is a usage error (exit 2) for every subcommand, and nothing runs', async () => {
    const out = join(dir, 'positional-keys');
    const cases: string[][] = [
      ['keygen', '--public-name', 'cover.example', '--out', out, 'extra'],
      ['dns', '--keys', join(dir, 'keys'), '--name', 'secret.example', 'extra'],
      ['inspect', '--keys', join(dir, 'keys'), 'capture.bin', 'extra'],
      ['serve', '--config', join(dir, 'none.json'), 'extra'],
      ['check', '--connect', '127.0.0.1:1', '--name', 'alpha.example', 'extra'],
      ['rotate', '--keys', out, '--state', join(dir, 'state.json'), '--public-name', 'cover.example', 'extra'],
      ['keyserver', '--config', join(dir, 'none.json'), 'extra'],
      ['demo', '--dir', join(dir, 'positional-demo'), '--once', 'extra'],
    ];
    for (const args of cases) {
      const r = await run(args);
      expect(r.code, `${args[0]}: ${r.stderr}`).toBe(2);
      expect(r.stderr, args[0]).toMatch(/unexpected argument 'extra'/i);
      expect(r.stdout, args[0]).toBe('');
    }
    await expect(stat(out)).rejects.toMatchObject({ code: 'ENOENT' });
  }, 60_000);
});
