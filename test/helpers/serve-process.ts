// Test-only: run `ech-server serve` (the built CLI) as a child process, wait
// for its "listening" line, and stop it by PID.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createServer, connect, type Server } from 'node:net';

const BIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface ServeProcess {
  child: ChildProcess;
  port: number;
  /** The config file it runs (rewrite it, then SIGHUP, to reload). */
  file: string;
  output(): string;
  stop(): Promise<number | null>;
}

export interface StartServeOptions {
  /** Run the server at this niceness (`nice -n`), e.g. 19 to starve it beside the clients. */
  nice?: number;
}

export async function startServe(dir: string, config: unknown, timeoutMs = 15_000, opts: StartServeOptions = {}): Promise<ServeProcess> {
  const file = join(dir, `serve-${Date.now()}-${Math.random().toString(36).slice(2)}.json`);
  // ECH_SERVE_WORKERS=2 runs every serve test with that many worker processes.
  const workers = process.env['ECH_SERVE_WORKERS'];
  const withWorkers = workers && typeof config === 'object' && config !== null && !('workers' in config) ? { ...config, workers: workers === 'auto' ? 'auto' : Number(workers) } : config;
  await writeFile(file, JSON.stringify(withWorkers, null, 2));
  const args = [BIN, 'serve', '--config', file];
  // nice execs node in place: the child's PID stays the server's.
  const child =
    opts.nice === undefined
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
      : spawn('nice', ['-n', String(opts.nice), process.execPath, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const port = await new Promise<number>((res, rej) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`serve did not start in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"listening":"[^"]*:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        res(Number(m[1]));
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`serve exited with ${code}: ${err}`));
    });
  });
  return {
    child,
    port,
    file,
    output: () => out + err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      // serve exits at most 1 s after its drain (drainTimeoutMs) ends; the
      // SIGKILL is for a hang, and says so in the output.
      const t = setTimeout(() => {
        err += '\n[serve-process] no exit 10 s after SIGTERM: SIGKILL\n';
        child.kill('SIGKILL');
      }, 10_000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

/** A loopback TCP relay that records every byte the client sent. */
export async function recordingRelay(targetPort: number): Promise<{ port: number; clientBytes(): Buffer; close(): Promise<void> }> {
  const chunks: Buffer[] = [];
  const open = new Set<{ destroy(): void }>();
  const server: Server = createServer((c) => {
    const up = connect(targetPort, '127.0.0.1');
    open.add(c).add(up);
    c.on('close', () => open.delete(c));
    up.on('close', () => open.delete(up));
    c.on('data', (d) => chunks.push(Buffer.from(d)));
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  return {
    port: (server.address() as { port: number }).port,
    clientBytes: () => Buffer.concat(chunks),
    close: () =>
      new Promise<void>((res) => {
        server.close(() => res());
        for (const s of open) s.destroy();
      }),
  };
}
