/**
 * `npm run soak -- [--connections N] [--concurrency C] [--seconds S] [--seed S] [--half-close]`:
 * `ech-server serve` as a child process under N connections (default
 * 10,000), about 10 % of them hostile (random bytes, truncated and oversized
 * hellos, half-open, stopped mid-handshake, mutated ECH payloads), the rest
 * ECH clients (`connectEch`): half fetch the `ech-status` page and check it
 * says ECH was accepted for the inner name, half go through a `forward`
 * route to a small HTTP backend and check its answer to their own path. Bounded concurrency and time.
 * With `--half-close`, one good client in four sends its request with
 * `end()` (request and FIN together) instead of `write()`.
 *
 * Ends with one JSON line: `connections`, `good`, `hostile`, `lost` (good
 * answers lost: must be 0), `handshakes_per_s`, and `fds`/`rss` (KiB)
 * before/peak/after of the server process (from /proc/PID/fd and
 * /proc/PID/status, Linux). Exits 1 when an answer was lost or the server's
 * fds did not come back to their baseline once the clients were gone.
 *
 * Development tool: built to dist/soak/, not part of the library's API.
 *
 * @module
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { performance } from 'node:perf_hooks';
import { createTestPki } from '../testing/pki.js';
import { generateEchKey } from '../keys/generate.js';
import { writeEchKeyFile } from '../keys/files.js';
import { encodeEchConfigList, type EchConfig } from '../ech/config.js';
import { buildEchClientHello } from '../ech/builder.js';
import { createEchSealer } from '../ech/sealer.js';
import { connectEch } from '../tls13/ech-client.js';
import { writeRecords } from '../tls/record.js';
import { ContentType, ExtensionType } from '../tls/constants.js';
import { encodeClientHelloMessage } from '../tls/client-hello.js';
import { Rng } from '../fuzz/rng.js';

const CLI = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const INNER = 'secret.example';
/** Forwarded (shared mode, TLS terminated) to a small HTTP backend in this process. */
const APP = 'app.example';
const COVER = 'cover.example';

/** Options of {@link runSoak}. @group Soak */
export interface SoakOptions {
  connections: number;
  /** Connections in flight at once (default 64). */
  concurrency?: number;
  /** Stop starting connections after this long (default 600 s). */
  seconds?: number;
  seed?: number;
  /** Progress lines (default none). */
  log?: (line: string) => void;
  /** One good client in four sends its request with `end()` (a half-close) instead of `write()`. */
  halfClose?: boolean;
}

/** Before/peak/after figures of the server process. @group Soak */
export interface Gauge {
  before: number;
  peak: number;
  after: number;
}

/** What {@link runSoak} measured (the JSON line). @group Soak */
export interface SoakReport {
  connections: number;
  good: number;
  hostile: number;
  /** Good connections whose answer did not arrive or was wrong. */
  lost: number;
  /** Up to 5 reasons for lost answers. */
  lost_reasons: string[];
  /** Hostile connections by kind. */
  hostile_kinds: Record<string, number>;
  /** Hostile connections the server had not closed within 10 s. */
  hostile_not_closed: number;
  handshakes_per_s: number;
  duration_s: number;
  fds: Gauge;
  /** Resident set size, KiB. */
  rss: Gauge;
  /** File descriptors back at (or below) the baseline once the clients were gone. */
  fds_recovered: boolean;
  server_pid: number;
  ok: boolean;
}

async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

async function rssKib(pid: number): Promise<number> {
  const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Start `ech-server serve` with `configFile`; resolves with the port once it listens. */
function startServe(configFile: string): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`serve did not start in 20 s: ${err}`));
    }, 20_000);
    const onData = (d: Buffer) => {
      out += d;
      const m = /"listening":"[^"]*:(\d+)"/.exec(out);
      if (m) {
        clearTimeout(t);
        child.stdout!.off('data', onData);
        // Keep draining its log so the pipe never blocks it.
        child.stdout!.resume();
        resolve({ child, port: Number(m[1]) });
      }
    };
    child.stdout!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`serve exited with ${code}: ${err}`));
    });
  });
}

/**
 * One good client: ECH to `name`; for the inner name the ech-status page with
 * the ECH-accepted verdict, for the app name the backend's answer to this
 * request's own path. Resolves to a reason when the answer was lost.
 */
async function goodClient(port: number, echConfigList: Uint8Array, ca: string, halfClose: boolean, name: string, n: number): Promise<string | undefined> {
  let socket;
  try {
    const r = await connectEch({ host: '127.0.0.1', port, servername: name, echConfigList, ca, timeoutMs: 15_000 });
    socket = r.socket;
    if (r.echStatus !== 'accepted') {
      socket.destroy();
      return `echStatus ${r.echStatus}`;
    }
  } catch (e) {
    return `connect: ${(e as Error).message}`;
  }
  const s = socket;
  return new Promise((resolve) => {
    let body = '';
    const timer = setTimeout(() => {
      s.destroy();
      resolve('no answer within 15 s');
    }, 15_000);
    s.on('data', (d: Buffer) => (body += d.toString('latin1')));
    s.on('error', () => undefined);
    s.on('close', () => {
      clearTimeout(timer);
      if (!body.startsWith('HTTP/1.1 200')) resolve(`${name}${halfClose ? ' (half-close)' : ''}: answer ${JSON.stringify(body.slice(0, 60))}`);
      else if (name === INNER && !body.includes(`ECH accepted: you reached <b>${INNER}</b>`)) resolve('answer without the ECH-accepted verdict');
      else if (name === APP && !body.endsWith(`app ok /req/${n}\n`)) resolve(`${APP}: wrong or truncated body ${JSON.stringify(body.slice(-40))}`);
      else resolve(undefined);
    });
    const request = `GET /req/${n} HTTP/1.1\r\nHost: ${name}\r\nConnection: close\r\n\r\n`;
    // A half-closing client sends its request and its FIN together.
    if (halfClose) s.end(request);
    else s.write(request);
  });
}

const HOSTILE_KINDS = ['random-bytes', 'truncated-hello', 'oversized-hello', 'half-open', 'stop-mid-handshake', 'mutated-ech'] as const;
type HostileKind = (typeof HOSTILE_KINDS)[number];

/** One hostile connection; resolves to whether the server closed it (within 10 s). */
async function hostileClient(port: number, kind: HostileKind, rng: Rng, config: EchConfig): Promise<boolean> {
  const hello = await buildEchClientHello(
    { serverName: INNER, keyShares: [{ group: 0x001d, keyExchange: rng.bytes(32) }], alpn: ['http/1.1'] },
    { config, sealer: createEchSealer },
  );
  const record = writeRecords(ContentType.handshake, hello.outerMessage);
  let payload: Uint8Array;
  switch (kind) {
    case 'random-bytes':
      payload = rng.bytes(1 + rng.int(2000));
      break;
    case 'truncated-hello':
      payload = record.subarray(0, 5 + rng.int(record.length - 6));
      break;
    case 'oversized-hello': {
      // A ClientHello announcing more than the server accepts (64 KiB), as records.
      const big = { ...hello.outer, extensions: [...hello.outer.extensions] };
      big.extensions.splice(0, 0, { type: 0xffee, data: new Uint8Array(65_000) });
      const message = encodeClientHelloMessage(big);
      payload = rng.chance(0.5) ? writeRecords(ContentType.handshake, message) : Uint8Array.of(22, 3, 1, 0xff, 0xff, ...message.subarray(0, 4000));
      break;
    }
    case 'half-open':
      // Part of a hello, then the write side closed: nothing more will come.
      payload = record.subarray(0, 5 + rng.int(40));
      break;
    case 'stop-mid-handshake':
      payload = record;
      break;
    default: {
      // Flip bytes of the ECH payload: the server cannot open it.
      const b = record.slice();
      const ech = hello.outer.extensions.find((e) => e.type === ExtensionType.encrypted_client_hello)!;
      const at = Buffer.from(b).indexOf(Buffer.from(ech.data.subarray(ech.data.length - 32)));
      for (let i = 0; i < 4; i++) b[at + rng.int(32)]! ^= 1 + rng.int(255);
      payload = b;
    }
  }
  return new Promise((resolve) => {
    const s: Socket = connect(port, '127.0.0.1');
    let closedByServer = false;
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, 10_000);
    s.on('error', () => undefined);
    s.on('end', () => {
      closedByServer = true;
      s.destroy();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(closedByServer || kind === 'stop-mid-handshake');
    });
    s.on('connect', () => {
      if (kind === 'half-open') s.end(payload);
      else s.write(payload);
    });
    s.on('data', () => {
      // The server answered the whole hello with its flight: drop the connection mid-handshake.
      if (kind === 'stop-mid-handshake') s.destroy();
    });
  });
}

/**
 * Run the soak (see the module comment).
 * @group Soak
 * @example
 * ```ts
 * const report = await runSoak({ connections: 300 });
 * console.log(JSON.stringify(report));
 * ```
 */
export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? (() => undefined);
  const concurrency = opts.concurrency ?? 64;
  const deadline = performance.now() + (opts.seconds ?? 600) * 1000;
  const rng = new Rng(opts.seed ?? 1, 99);
  const dir = await mkdtemp(join(tmpdir(), 'ech-soak-'));
  let child: ChildProcess | undefined;
  let backend: Server | undefined;
  try {
    const pki = createTestPki();
    const cover = pki.issue([COVER]);
    const inner = pki.issue([INNER, APP]);
    backend = createServer((req, res) => {
      res.setHeader('content-type', 'text/plain');
      res.end(`app ok ${req.url}\n`);
    });
    await new Promise<void>((r) => backend!.listen(0, '127.0.0.1', r));
    const backendPort = (backend.address() as AddressInfo).port;
    const files: Record<string, string> = { 'cover.crt': cover.cert, 'cover.key': cover.key, 'inner.crt': inner.cert, 'inner.key': inner.key };
    for (const [n, text] of Object.entries(files)) {
      await writeFile(join(dir, n), text, { mode: 0o600 });
      await chmod(join(dir, n), 0o600);
    }
    const key = generateEchKey({ publicName: COVER, configId: 17 });
    const keysDir = join(dir, 'keys');
    await mkdir(keysDir, { mode: 0o700 });
    await writeEchKeyFile(join(keysDir, 'cover.pem'), key.config, key.privateKeyRaw);
    const echConfigList = encodeEchConfigList([key.config]);
    const config = {
      listen: '127.0.0.1:0',
      keys: 'keys',
      publicName: { cert: 'cover.crt', key: 'cover.key' },
      routes: [
        { serverName: INNER, cert: 'inner.crt', key: 'inner.key', respond: 'ech-status' },
        { serverName: APP, cert: 'inner.crt', key: 'inner.key', forward: `127.0.0.1:${backendPort}` },
      ],
      limits: { firstFlightTimeoutMs: 3000, handshakeTimeoutMs: 5000 },
      drainTimeoutMs: 2000,
    };
    const configFile = join(dir, 'serve.json');
    await writeFile(configFile, JSON.stringify(config));
    const started = await startServe(configFile);
    child = started.child;
    const pid = child.pid!;
    const { port } = started;
    // Baseline once the server is idle.
    await sleep(300);
    const fds: Gauge = { before: await fdCount(pid), peak: 0, after: 0 };
    const rss: Gauge = { before: await rssKib(pid), peak: 0, after: 0 };
    fds.peak = fds.before;
    rss.peak = rss.before;
    const sample = async () => {
      try {
        fds.peak = Math.max(fds.peak, await fdCount(pid));
        rss.peak = Math.max(rss.peak, await rssKib(pid));
      } catch {
        // the process is gone: reported by the exit check
      }
    };
    const sampler = setInterval(() => void sample(), 100);
    log(`soak: serve pid ${pid} on port ${port}; fds ${fds.before}, rss ${rss.before} KiB; ${opts.connections} connections, ${concurrency} at a time`);

    let next = 0;
    let good = 0;
    let hostile = 0;
    let lost = 0;
    let hostileNotClosed = 0;
    const reasons: string[] = [];
    const kinds: Record<string, number> = {};
    const t0 = performance.now();
    const worker = async () => {
      for (;;) {
        const i = next++;
        if (i >= opts.connections || performance.now() > deadline) return;
        // About one in ten is hostile, deterministically by the seed.
        if (rng.int(10) === 0) {
          const kind = HOSTILE_KINDS[hostile % HOSTILE_KINDS.length]!;
          hostile++;
          kinds[kind] = (kinds[kind] ?? 0) + 1;
          if (!(await hostileClient(port, kind, rng, key.config))) hostileNotClosed++;
        } else {
          good++;
          // Half to the ech-status page, half forwarded to the HTTP backend.
          const reason = await goodClient(port, echConfigList, pki.caCert, opts.halfClose === true && good % 8 < 2, good % 2 ? APP : INNER, i);
          if (reason !== undefined) {
            lost++;
            if (reasons.length < 5) reasons.push(reason);
          }
        }
        if (i > 0 && i % 1000 === 0) log(`soak: ${i} connections, ${lost} lost`);
      }
    };
    await Promise.all(Array.from({ length: concurrency }, worker));
    const loadSeconds = (performance.now() - t0) / 1000;
    // The clients are gone: the server's descriptors must come back.
    let after = await fdCount(pid);
    for (let waited = 0; after > fds.before && waited < 15_000; waited += 250) {
      await sleep(250);
      after = await fdCount(pid);
    }
    clearInterval(sampler);
    await sample();
    fds.after = after;
    rss.after = await rssKib(pid);
    const alive = child.exitCode === null && child.signalCode === null;
    const recovered = fds.after <= fds.before;
    return {
      connections: good + hostile,
      good,
      hostile,
      lost: lost + (alive ? 0 : 1),
      lost_reasons: alive ? reasons : [...reasons, `serve exited (${child.exitCode ?? child.signalCode})`],
      hostile_kinds: kinds,
      hostile_not_closed: hostileNotClosed,
      handshakes_per_s: Math.round(((good - lost) / loadSeconds) * 10) / 10,
      duration_s: Math.round(loadSeconds * 10) / 10,
      fds,
      rss,
      fds_recovered: recovered,
      server_pid: pid,
      ok: lost === 0 && recovered && alive,
    };
  } finally {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((r) => child!.once('exit', r));
      child.kill('SIGTERM');
      const t = setTimeout(() => child!.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    }
    if (backend) {
      backend.closeAllConnections();
      await new Promise((r) => backend!.close(r));
    }
    await rm(dir, { recursive: true, force: true });
  }
}

function parseArgs(argv: string[]): SoakOptions {
  const o: SoakOptions = { connections: 10_000 };
  for (let i = 0; i < argv.length; i++) {
    const f = argv[i]!;
    if (f === '--half-close') {
      o.halfClose = true;
      continue;
    }
    const v = Number(argv[++i]);
    if (!Number.isInteger(v) || v < 1) throw new Error(`${f} needs a positive whole number`);
    if (f === '--connections') o.connections = v;
    else if (f === '--concurrency') o.concurrency = v;
    else if (f === '--seconds') o.seconds = v;
    else if (f === '--seed') o.seed = v;
    else throw new Error(`unknown option ${f}`);
  }
  return o;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let opts: SoakOptions;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`soak: ${(e as Error).message}\nusage: soak [--connections N] [--concurrency C] [--seconds S] [--seed S] [--half-close]\n`);
    process.exit(2);
  }
  runSoak({ ...opts, log: (l) => process.stderr.write(`${l}\n`) }).then(
    (r) => {
      process.stdout.write(`${JSON.stringify(r)}\n`);
      process.exitCode = r.ok ? 0 : 1;
    },
    (e: unknown) => {
      process.stderr.write(`soak: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
