/**
 * `npm run bench:handshake`: server CPU per handshake, side by side, for
 * `ech-server serve` (1 and 2 workers), Node's own `tls` server (plain TLS
 * 1.3) and BoringSSL's ECH server; the split-mode relay against a plain
 * `net` pipe proxy; and RSS per idle established connection.
 *
 * Each server runs in its own process pinned to core 0 (`taskset -c 0`);
 * the load generator (the BoringSSL test harness in loop mode, one process
 * for all connections of a case) runs on core 1. Server CPU is read from
 * `/proc/PID/task/* /schedstat` (time on CPU, every thread of the server
 * and of its worker processes) before and after each case; cases run
 * interleaved in rounds so load from other processes lands on all alike.
 * One JSON object goes to stdout; the exit status is 1 when a required
 * ratio misses its target.
 *
 * Needs Linux, `taskset`, `openssl` (the certificate), gcc and BoringSSL
 * (android-libboringssl-dev): the harness binary is `.cache/boringssl-harness`,
 * built from `test/peers/boringssl/harness.c` when missing or older.
 *
 * Usage: `node dist/bench/handshake-cpu.js [--count N] [--rounds R]
 * [--warm W] [--workers-warm W] [--relay-mib M] [--relay-rounds R] [--conns N] [--skip cpu,workers,relay,memory]`
 *
 * `workers2_over_workers1`: server CPU per handshake of `serve` with
 * `"workers": 2` (primary and both workers, both workers on core 0) over
 * `serve` with one worker (a plain single process), the same ECH case, in
 * the same interleaved rounds. Each worker is first warmed with W
 * handshakes (default 6000; the one-worker server with W, the two-worker
 * one with 2W): V8 is still optimising the handshake path after 2000
 * handshakes, and a worker of two sees half the traffic: settled code is
 * measured (the ratio did not move measurably with it; docs/front-end.md,
 * "What sharing one socket costs"). Two load-independent
 * counts go with it: `workers1_wakeups` and `workers2_wakeups`, voluntary
 * context switches per handshake (every thread of every process), which
 * shows the cost of every worker polling the one listening socket (a
 * connection may wake the worker that does not accept it); and
 * `workers2_over_workers1_median`, the median of the per-round ratios, less
 * moved by a burst of load landing on one case; and `workers2_worker_share`,
 * each worker's part of the workers' CPU (the run is refused when one worker
 * got under a quarter: the ratio would then describe one worker).
 *
 * What the ratio includes besides coordination: both workers share core 0
 * and the kernel hands them the connections in turn, so each handshake
 * starts with the core's caches holding the other process's code and heap.
 * Two independent one-worker `serve` processes on core 0 taking alternate
 * connections (no cluster, no shared socket) cost about as much: measured
 * 2026-11-29 on Node 20 with the machine quiet, 1.23 and 1.25 x one process,
 * where the two-worker cluster measured 1.29 and 1.35 in the same rounds.
 * That control is a case of its own, `processes2_us` (the harness client
 * alternating between the two with `--connect-alt`, each process warmed
 * like a worker): `workers2_over_processes2` is what the cluster itself adds
 * (its shared socket, its primary), `processes2_over_workers1` what two
 * processes sharing one core cost without any coordination.
 *
 * @module
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs, promisify } from 'node:util';
import net from 'node:net';
import tls from 'node:tls';
import { randomBytes } from 'node:crypto';
import { generateEchKey } from '../keys/generate.js';
import { writeEchKeyFile } from '../keys/files.js';
import { encodeEchConfigList } from '../ech/config.js';
import { buildClientHello, buildEchClientHello } from '../ech/builder.js';
import { encodeClientHelloMessage } from '../tls/client-hello.js';
import { createEchSealer } from '../ech/sealer.js';
import { NamedGroup, ContentType } from '../tls/constants.js';
import { writeRecords } from '../tls/record.js';
import { connectEch } from '../tls13/ech-client.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, '..', '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const SELF = fileURLToPath(import.meta.url);
const HARNESS_SOURCE = join(ROOT, 'test', 'peers', 'boringssl', 'harness.c');
const HARNESS_BINARY = join(ROOT, '.cache', 'boringssl-harness');
const INCLUDE_DIR = process.env['BORINGSSL_INCLUDE_DIR'] ?? '/usr/include/android';
const LIB_DIR = process.env['BORINGSSL_LIB_DIR'] ?? '/usr/lib/x86_64-linux-gnu/android';
const SERVER_CORE = '0';
const CLIENT_CORE = '1';

const run = promisify(execFile);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const b64 = (u: Uint8Array) => Buffer.from(u).toString('base64');
const GET = (host: string) => `GET / HTTP/1.1\r\nHost: ${host}\r\nAccept: application/json\r\nConnection: close\r\n\r\n`;

/** The harness binary, built like test/peers/boringssl.ts buildHarness does. */
async function ensureHarness(): Promise<string> {
  const src = statSync(HARNESS_SOURCE).mtimeMs;
  if (existsSync(HARNESS_BINARY) && statSync(HARNESS_BINARY).mtimeMs >= src) return HARNESS_BINARY;
  await mkdir(dirname(HARNESS_BINARY), { recursive: true });
  const tmp = `${HARNESS_BINARY}.${process.pid}.tmp`;
  await run('gcc', ['-O2', '-Wall', `-I${INCLUDE_DIR}`, HARNESS_SOURCE, '-o', tmp, `-L${LIB_DIR}`, `-Wl,-rpath,${LIB_DIR}`, '-lssl', '-lcrypto'], { timeout: 120_000 });
  await rename(tmp, HARNESS_BINARY);
  return HARNESS_BINARY;
}

// ------------------------------------------------------------ processes

/** Every process id in the tree under `pid` (workers of a cluster too). */
function processTree(pid: number): number[] {
  const out = [pid];
  let tasks: string[] = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const t of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const c of children.split(' ').filter(Boolean)) out.push(...processTree(Number(c)));
  }
  return out;
}

/** The sum of `read(file text)` over every thread of every process under `pid` (of `pid` alone with `only`). */
function sumOverThreads(pid: number, only: boolean, file: string, read: (text: string) => number): number {
  let sum = 0;
  for (const p of only ? [pid] : processTree(pid)) {
    let tasks: string[] = [];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      continue;
    }
    for (const t of tasks) {
      try {
        sum += read(readFileSync(`/proc/${p}/task/${t}/${file}`, 'utf8'));
      } catch {
        // the thread ended between the two reads
      }
    }
  }
  return sum;
}

/** Nanoseconds on CPU of every thread of every process under `pid` (of `pid` alone with `only`). */
function cpuNs(pid: number, only = false): number {
  return sumOverThreads(pid, only, 'schedstat', (text) => Number(text.split(' ')[0]));
}

/** Voluntary context switches (sleeps: waits on epoll, futex...) of every thread of every process under `pid`. */
function voluntarySwitches(pid: number): number {
  return sumOverThreads(pid, false, 'status', (text) => Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(text)?.[1] ?? 0));
}

/** Resident set size of one process, bytes. */
function rssBytes(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

interface Proc {
  child: ChildProcess;
  pid: number;
  /** The first stdout line, parsed. */
  first: Record<string, unknown>;
  lines: string[];
  stop(): Promise<void>;
}

/** Start `cmd` pinned to `core`; resolves with its first JSON stdout line. */
function startPinned(core: string, cmd: string, args: string[], timeoutMs = 20_000): Promise<Proc> {
  const child = spawn('taskset', ['-c', core, cmd, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d) => (err = (err + d).slice(-4000)));
  const lines: string[] = [];
  let buf = '';
  let started = false;
  return new Promise((res, rej) => {
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      rej(new Error(`${cmd} ${args[0] ?? ''} did not start: ${err}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(t);
      rej(new Error(`${cmd} ${args[0] ?? ''} exited with ${code}: ${err}`));
    });
    child.stdout!.on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (lines.length > 1000) lines.shift();
        lines.push(line);
        if (!started && line.startsWith('{')) {
          let first: Record<string, unknown>;
          try {
            first = JSON.parse(line) as Record<string, unknown>;
          } catch {
            continue;
          }
          started = true;
          clearTimeout(t);
          child.removeAllListeners('exit');
          res({
            child,
            pid: child.pid!,
            first,
            lines,
            stop: () =>
              new Promise<void>((done) => {
                if (child.exitCode !== null || child.signalCode !== null) return done();
                const k = setTimeout(() => child.kill('SIGKILL'), 15_000);
                child.once('exit', () => {
                  clearTimeout(k);
                  done();
                });
                child.kill('SIGTERM');
              }),
          });
        }
      }
    });
  });
}

/** Run the harness client in loop mode on the client core; its summary line. */
async function drive(harness: string, args: string[], count: number): Promise<{ handshakes: number; echAccepted: number; echRejected: number; resumed: number; ms: number }> {
  const { stdout } = await run('taskset', ['-c', CLIENT_CORE, harness, 'client', ...args, '--count', String(count), '--timeout', '10'], {
    timeout: 600_000,
    maxBuffer: 1 << 20,
  }).catch((e: { stdout?: string; stderr?: string; message: string }) => {
    if (e.stdout && /"count"/.test(e.stdout)) return { stdout: e.stdout };
    throw new Error(`harness client failed: ${e.stderr ?? e.message}`);
  });
  return JSON.parse(stdout.trim().split('\n').pop()!);
}

// ---------------------------------------------------------------- cases

interface Case {
  name: string;
  pid: () => number;
  args: string[];
  /** What every connection must show. */
  expect: 'accepted' | 'rejected' | 'plain' | 'resumed';
  /** Warm-up connections (default 1000). */
  warm?: number;
  cpuNs: number;
  /** CPU of the top process alone (a cluster's primary). */
  topNs?: number;
  n: number;
  /** Voluntary context switches, summed over the rounds (when counted). */
  wakeups?: number;
  /** Server CPU per handshake of each round, ns (when kept). */
  perRound?: number[];
  /** CPU of each child process (a cluster's workers), ns, by pid (when kept). */
  childNs?: Map<number, number>;
  /** A second, independent server process whose CPU counts with `pid`'s (the two-process control). */
  alsoPid?: () => number;
}

function check(c: Case, s: { handshakes: number; echAccepted: number; echRejected: number; resumed: number }, count: number): void {
  const bad =
    c.expect === 'rejected'
      ? s.echRejected !== count
      : s.handshakes !== count ||
        (c.expect === 'accepted' && s.echAccepted !== count) ||
        (c.expect === 'plain' && s.echAccepted !== 0) ||
        (c.expect === 'resumed' && (s.echAccepted !== count || s.resumed < count - 1));
  if (bad) throw new Error(`${c.name}: expected every connection ${c.expect}, got ${JSON.stringify(s)}`);
}

// ---------------------------------------------------------------- relay

/** The fake backend's answer to the forwarded ClientHello: a ServerHello-shaped record, so the front end relays as after a handshake. */
const FAKE_SERVER_HELLO = (() => {
  const body = Buffer.concat([Buffer.from([3, 3]), randomBytes(32), Buffer.from([0, 0x13, 0x01, 0, 0, 0])]);
  const hs = Buffer.concat([Buffer.from([2, 0, 0, body.length]), body]);
  return Buffer.concat([Buffer.from([0x16, 3, 3, 0, hs.length]), hs]);
})();

/**
 * Relay client mode (runs on the client core): a sink backend, then on each
 * stdin line `HOST PORT HELLO_B64 MIB` one connection that sends the hello,
 * waits for the ServerHello-shaped answer and sends MIB MiB; prints the
 * bytes per second the sink saw.
 */
async function relayClientMode(): Promise<void> {
  let waiting: { total: number; got: number; done: (ns: bigint) => void } | undefined;
  const sink = net.createServer((s) => {
    let helloSeen = false;
    let head = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      if (!helloSeen) {
        head = Buffer.concat([head, d]);
        if (head.length < 5) return;
        const len = 5 + head.readUInt16BE(3);
        if (head.length < len) return;
        helloSeen = true;
        s.write(FAKE_SERVER_HELLO);
        d = head.subarray(len);
      }
      if (waiting && d.length) {
        waiting.got += d.length;
        if (waiting.got >= waiting.total) waiting.done(process.hrtime.bigint());
      }
    });
    s.on('error', () => undefined);
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
  process.stdout.write(`${JSON.stringify({ sink: (sink.address() as net.AddressInfo).port })}\n`);
  const chunk = randomBytes(256 * 1024);
  let input = '';
  for await (const d of process.stdin) {
    input += d;
    let i;
    while ((i = input.indexOf('\n')) >= 0) {
      const [host, port, hello, mib] = input.slice(0, i).split(' ');
      input = input.slice(i + 1);
      const total = Number(mib) * 1024 * 1024;
      const c = net.connect(Number(port), host!);
      c.on('error', () => undefined);
      await new Promise<void>((r) => c.once('connect', () => r()));
      c.write(Buffer.from(hello!, 'base64'));
      await new Promise<void>((r) => c.once('data', () => r()));
      const done = new Promise<bigint>((r) => (waiting = { total, got: 0, done: r }));
      const start = process.hrtime.bigint();
      for (let sent = 0; sent < total; sent += chunk.length) {
        if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
      }
      const end = await done;
      c.destroy();
      waiting = undefined;
      process.stdout.write(`${JSON.stringify({ bytesPerSecond: total / (Number(end - start) / 1e9) })}\n`);
    }
  }
  sink.close();
}

interface GcCount {
  markCompacts: number;
  scavenges: number;
}

/** Counts the `--trace-gc` lines of a child's stdout as they come. */
function gcCounter(child: ChildProcess): GcCount {
  const count: GcCount = { markCompacts: 0, scavenges: 0 };
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('latin1');
    const lines = buf.split('\n');
    buf = lines.pop()!;
    for (const l of lines) {
      if (l.includes(': Mark-Compact')) count.markCompacts++;
      else if (l.includes(': Scavenge')) count.scavenges++;
    }
  });
  return count;
}

/** read- and write-family system calls of one process so far (`/proc/PID/io` syscr + syscw). */
function ioSyscalls(pid: number): number {
  const io = readFileSync(`/proc/${pid}/io`, 'utf8');
  return Number(/syscr: (\d+)/.exec(io)?.[1] ?? NaN) + Number(/syscw: (\d+)/.exec(io)?.[1] ?? NaN);
}

/** Plain `net` pipe proxy mode: `--pipe-proxy PORT` (runs on the server core). */
async function pipeProxyMode(target: number): Promise<void> {
  const server = net.createServer((c) => {
    const up = net.connect(target, '127.0.0.1');
    c.pipe(up).pipe(c);
    c.on('error', () => up.destroy());
    up.on('error', () => c.destroy());
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${JSON.stringify({ listening: (server.address() as net.AddressInfo).port })}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

/** Node's own TLS server mode: `--node-tls-server CERT KEY` (same request, a small JSON answer, close). */
async function nodeTlsServerMode(cert: string, key: string): Promise<void> {
  const server = tls.createServer({ cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] }, (s) => {
    let req = '';
    s.on('data', (d) => {
      req += d;
      if (req.includes('\r\n\r\n')) {
        const body = `${JSON.stringify({ site: s.servername, echStatus: 'not-offered', protocol: s.getProtocol(), cipher: s.getCipher().standardName })}\n`;
        s.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      }
    });
    s.on('error', () => undefined);
  });
  server.on('tlsClientError', () => undefined);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  process.stdout.write(`${JSON.stringify({ listening: (server.address() as net.AddressInfo).port })}\n`);
  process.on('SIGTERM', () => process.exit(0));
}

/** Hold mode: `--hold PORT N LIST_B64 CA`: N ECH connections (our client), kept open idle until stdin closes. */
async function holdMode(port: number, n: number, list: string, ca: string): Promise<void> {
  const held: { destroy(): void }[] = [];
  let next = 0;
  let failed = 0;
  const worker = async () => {
    while (next < n) {
      next++;
      try {
        const r = await connectEch({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList: Buffer.from(list, 'base64'), ca: readFileSync(ca, 'utf8'), ALPNProtocols: ['http/1.1'] });
        r.socket.on('error', () => undefined);
        held.push(r.socket);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  process.stdout.write(`${JSON.stringify({ held: held.length, failed })}\n`);
  for await (const _ of process.stdin) void _;
  for (const s of held) s.destroy();
  process.exit(0);
}

// ------------------------------------------------------------------ main

interface Figures {
  [k: string]: unknown;
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      count: { type: 'string' },
      rounds: { type: 'string' },
      'relay-mib': { type: 'string' },
      'relay-rounds': { type: 'string' },
      conns: { type: 'string' },
      skip: { type: 'string' },
      'workers-warm': { type: 'string' },
      warm: { type: 'string' },
      'pipe-proxy': { type: 'string' },
      'node-tls-server': { type: 'string', multiple: true },
      'relay-client': { type: 'boolean' },
      hold: { type: 'string', multiple: true },
    },
    allowPositionals: true,
  });
  if (values['pipe-proxy']) return pipeProxyMode(Number(values['pipe-proxy'])).then(() => -1);
  if (values['node-tls-server']) return nodeTlsServerMode(values['node-tls-server'][0]!, values['node-tls-server'][1]!).then(() => -1);
  if (values['relay-client']) return relayClientMode().then(() => 0);
  if (values.hold) return holdMode(Number(values.hold[0]), Number(values.hold[1]), values.hold[2]!, values.hold[3]!).then(() => 0);

  const count = Number(values.count ?? 1000);
  const rounds = Number(values.rounds ?? 10);
  const relayMib = Number(values['relay-mib'] ?? 256);
  const relayRounds = Number(values['relay-rounds'] ?? 7);
  const conns = Number(values.conns ?? 10_000);
  const workersWarm = Number(values['workers-warm'] ?? 6000);
  // Warm-up handshakes per CPU case before the measured rounds (default
  // 2500): the `serve` process under the four `ours_*` cases sees 10,000,
  // past the ~7,000 after which V8 stops optimising the handshake path
  // (docs/performance.md): steady state, what an operator sizing a front
  // end that has been up for a minute pays. Node's and BoringSSL's servers
  // get the same per case.
  const warm = Number(values['warm'] ?? 2500);
  const skip = new Set((values.skip ?? '').split(',').filter(Boolean));
  if (cpus().length < 2) throw new Error('needs two cores (server on core 0, load generator on core 1)');
  if (!existsSync(CLI)) throw new Error(`${CLI} missing: run npm run build first`);
  const harness = await ensureHarness();
  const load = [loadavg()[0]!];

  const dir = await mkdtemp(join(tmpdir(), 'ech-bench-hs-'));
  const procs: Proc[] = [];
  try {
    // One ECDSA P-256 certificate for every server (names: cover, alpha, beta).
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', '/CN=cover.example',
      '-addext', 'subjectAltName=DNS:cover.example,DNS:alpha.example,DNS:beta.example']);
    // Our ECH key (X25519, HKDF-SHA256, AES-128-GCM) and a stale one (rejected → retry_configs).
    const echKey = generateEchKey({ publicName: 'cover.example', kem: 'x25519', configId: 0x11 });
    const stale = generateEchKey({ publicName: 'cover.example', kem: 'x25519', configId: 0x22 });
    await mkdir(join(dir, 'keys'), { recursive: true });
    await writeEchKeyFile(join(dir, 'keys', 'ech.pem'), echKey.config, echKey.privateKeyRaw);
    const ourList = b64(encodeEchConfigList([echKey.config]));
    const staleList = b64(encodeEchConfigList([stale.config]));

    const serveConfig = async (name: string, extra: Record<string, unknown>) => {
      const file = join(dir, `${name}.json`);
      await writeFile(
        file,
        JSON.stringify({
          listen: '127.0.0.1:0',
          keys: 'keys',
          publicName: { cert, key },
          routes: [{ serverName: 'alpha.example', cert, key, respond: 'ech-status' }],
          ...extra,
        }),
      );
      return file;
    };
    const startOurs = async (name: string, extra: Record<string, unknown>, nodeFlags: string[] = []) => {
      const p = await startPinned(SERVER_CORE, process.execPath, [...nodeFlags, CLI, 'serve', '--config', await serveConfig(name, extra)]);
      procs.push(p);
      return { p, port: Number(/:(\d+)$/.exec(String(p.first['listening']))![1]) };
    };

    const ours1 = await startOurs('ours1', {});
    // workers2_over_workers1 compares two servers that see only the ECH
    // case, each worker warmed with as many handshakes as the one of w1 (the
    // JIT state of a worker follows how many handshakes it has run), and
    // long enough for V8 to be done optimising the handshake path.
    const w1 = skip.has('workers') ? undefined : await startOurs('w1', {});
    const ours2 = skip.has('workers') ? undefined : await startOurs('ours2', { workers: 2 });
    // The control for ours2: two independent one-worker processes, one core.
    const p2a = skip.has('workers') ? undefined : await startOurs('p2a', {});
    const p2b = skip.has('workers') ? undefined : await startOurs('p2b', {});
    const nodeTls = await startPinned(SERVER_CORE, process.execPath, [SELF, '--node-tls-server', cert, '--node-tls-server', key]);
    procs.push(nodeTls);
    const marshal = JSON.parse((await run(harness, ['marshal-config', '--public-name', 'cover.example', '--config-id', '7'])).stdout) as Record<string, string>;
    const boring = await startPinned(SERVER_CORE, harness, ['server', '--listen', '127.0.0.1:0', '--cert', cert, '--key', key, '--ech-key', marshal['privateKey']!, '--ech-config', marshal['echConfig']!, '--alpn', 'http/1.1', '--lifetime', '3600', '--timeout', '10']);
    procs.push(boring);
    // The BoringSSL server prints a line per connection: keep reading.
    boring.child.stdout!.resume();

    const common = (port: number) => ['--connect', `127.0.0.1:${port}`, '--alpn', 'http/1.1', '--send-b64', Buffer.from(GET('alpha.example')).toString('base64')];
    const ech = (port: number, list: string) => [...common(port), '--sni', 'alpha.example', '--ech-config-list', list, '--read'];
    const cases: Case[] = [
      { name: 'ours_us', pid: () => ours1.p.pid, args: ech(ours1.port, ourList), expect: 'accepted', cpuNs: 0, n: 0, perRound: [] },
      { name: 'ours_rejected_us', pid: () => ours1.p.pid, args: ech(ours1.port, staleList), expect: 'rejected', cpuNs: 0, n: 0 },
      { name: 'ours_no_ech_us', pid: () => ours1.p.pid, args: [...common(ours1.port), '--sni', 'alpha.example', '--read'], expect: 'plain', cpuNs: 0, n: 0 },
      { name: 'ours_resumed_us', pid: () => ours1.p.pid, args: [...ech(ours1.port, ourList), '--resume'], expect: 'resumed', cpuNs: 0, n: 0 },
      { name: 'node_tls_us', pid: () => nodeTls.pid, args: [...common(Number(nodeTls.first['listening'])), '--sni', 'alpha.example', '--read'], expect: 'plain', cpuNs: 0, n: 0, perRound: [] },
      { name: 'node_tls_resumed_us', pid: () => nodeTls.pid, args: [...common(Number(nodeTls.first['listening'])), '--sni', 'alpha.example', '--read', '--resume'], expect: 'plain', cpuNs: 0, n: 0 },
      // BoringSSL's server echoes the request: one read, then the client closes.
      { name: 'boringssl_us', pid: () => boring.pid, args: [...common(Number(boring.first['listening'])), '--sni', 'alpha.example', '--ech-config-list', marshal['echConfigList']!], expect: 'accepted', cpuNs: 0, n: 0, perRound: [] },
      ...(w1 && ours2
        ? [
            { name: 'workers1_us', pid: () => w1.p.pid, args: ech(w1.port, ourList), expect: 'accepted' as const, warm: workersWarm, cpuNs: 0, n: 0, wakeups: 0, perRound: [] },
            { name: 'workers2_us', pid: () => ours2.p.pid, args: ech(ours2.port, ourList), expect: 'accepted' as const, warm: 2 * workersWarm, cpuNs: 0, topNs: 0, n: 0, wakeups: 0, perRound: [], childNs: new Map<number, number>() },
          ]
        : []),
      ...(p2a && p2b
        ? [
            {
              name: 'processes2_us',
              pid: () => p2a.p.pid,
              alsoPid: () => p2b.p.pid,
              args: [...ech(p2a.port, ourList), '--connect-alt', `127.0.0.1:${p2b.port}`],
              expect: 'accepted' as const,
              warm: 2 * workersWarm,
              cpuNs: 0,
              n: 0,
              wakeups: 0,
              perRound: [],
            },
          ]
        : []),
    ];
    if (skip.has('cpu')) cases.length = 0;
    // Warm-up (JIT, caches), then rounds of every case in turn.
    for (const c of cases) check(c, await drive(harness, c.args, c.warm ?? warm), c.warm ?? warm);
    const per = Math.max(1, Math.ceil(count / rounds));
    for (let r = 0; r < rounds; r++) {
      for (const c of cases) {
        await sleep(100);
        const cpu = () => cpuNs(c.pid()) + (c.alsoPid ? cpuNs(c.alsoPid()) : 0);
        const wakes = () => voluntarySwitches(c.pid()) + (c.alsoPid ? voluntarySwitches(c.alsoPid()) : 0);
        const before = cpu();
        const topBefore = cpuNs(c.pid(), true);
        const wakeBefore = c.wakeups !== undefined ? wakes() : 0;
        const children = c.childNs ? processTree(c.pid()).filter((p) => p !== c.pid()) : [];
        const childBefore = children.map((p) => cpuNs(p, true));
        const s = await drive(harness, c.args, per);
        await sleep(150); // the server's close handling after the last connection
        const spent = cpu() - before;
        c.cpuNs += spent;
        c.perRound?.push(spent / per);
        if (c.wakeups !== undefined) c.wakeups += wakes() - wakeBefore;
        if (c.topNs !== undefined) c.topNs += cpuNs(c.pid(), true) - topBefore;
        children.forEach((p, i) => c.childNs!.set(p, (c.childNs!.get(p) ?? 0) + cpuNs(p, true) - childBefore[i]!));
        c.n += per;
        check(c, s, per);
      }
    }
    load.push(loadavg()[0]!);
    const figures: Figures = {};
    for (const c of cases) figures[c.name] = Math.round((c.cpuNs / c.n / 1000) * 10) / 10;
    const us = (k: string) => figures[k] as number;
    const ratio = (a: number, b: number) => Math.round((a / b) * 1000) / 1000;
    /** The median over rounds of a[i] / b[i]. */
    const medianRatio = (a: number[], b: number[]) => {
      const r = a.map((x, i) => x / b[i]!).sort((x, y) => x - y);
      return Math.round(r[Math.floor(r.length / 2)]! * 1000) / 1000;
    };
    if (cases.length) {
      figures['handshakes_per_case'] = per * rounds;
      figures['warm_up_per_case'] = warm;
    }
    if (cases.length) {
      figures['ours_over_node'] = ratio(us('ours_us'), us('node_tls_us'));
      figures['ours_over_boringssl'] = ratio(us('ours_us'), us('boringssl_us'));
      // Medians of the per-round ratios (each round runs every case once,
      // back to back): a burst of load or a change of the host's speed moves
      // one round's pair, not the figure.
      const perRoundOf = (k: string) => cases.find((x) => x.name === k)!.perRound!;
      figures['ours_over_node_median'] = medianRatio(perRoundOf('ours_us'), perRoundOf('node_tls_us'));
      figures['ours_over_boringssl_median'] = medianRatio(perRoundOf('ours_us'), perRoundOf('boringssl_us'));
      // What ours_over_node is made of, both parts in units of Node's whole
      // plain handshake (they add up to ours_over_node): our handshake
      // without ECH (the same TLS 1.3 work as Node's), and what accepting
      // ECH adds to it (HPKE's X25519 and key schedule, opening the inner
      // ClientHello, a second transcript, the confirmation). The 1.0 target
      // asks the first to be below 1.0 by at least the second.
      figures['ours_no_ech_over_node'] = ratio(us('ours_no_ech_us'), us('node_tls_us'));
      figures['ech_accept_over_node'] = ratio(us('ours_us') - us('ours_no_ech_us'), us('node_tls_us'));
    }
    if (ours2 && cases.length) {
      figures['workers2_over_workers1'] = ratio(us('workers2_us'), us('workers1_us'));
      const c = cases.find((x) => x.name === 'workers2_us')!;
      const c1 = cases.find((x) => x.name === 'workers1_us')!;
      figures['workers2_primary_us'] = Math.round((c.topNs! / c.n / 1000) * 10) / 10;
      figures['workers2_over_workers1_median'] = medianRatio(c.perRound!, c1.perRound!);
      // Each worker's part of the workers' CPU: the kernel picks the worker
      // of each connection; a worker left (nearly) idle would make the ratio
      // a one-worker figure, so that run is refused.
      const childTotal = [...c.childNs!.values()].reduce((a, b) => a + b, 0);
      const share = [...c.childNs!.values()].map((x) => Math.round((x / childTotal) * 100) / 100);
      figures['workers2_worker_share'] = share;
      if (share.length !== 2 || share.some((x) => x < 0.25)) throw new Error(`workers2: connections not spread over both workers (CPU shares ${JSON.stringify(share)})`);
      figures['workers1_wakeups'] = Math.round((c1.wakeups! / c1.n) * 100) / 100;
      figures['workers2_wakeups'] = Math.round((c.wakeups! / c.n) * 100) / 100;
      figures['workers_warm_per_worker'] = workersWarm;
      const p2 = cases.find((x) => x.name === 'processes2_us');
      if (p2) {
        figures['workers2_over_processes2'] = ratio(us('workers2_us'), us('processes2_us'));
        figures['workers2_over_processes2_median'] = medianRatio(c.perRound!, p2.perRound!);
        figures['processes2_over_workers1'] = ratio(us('processes2_us'), us('workers1_us'));
        figures['processes2_wakeups'] = Math.round((p2.wakeups! / p2.n) * 100) / 100;
      }
    }
    for (const p of procs.splice(0)) await p.stop();

    // Split-mode relay vs a plain pipe proxy (both on the server core).
    if (!skip.has('relay')) {
      const client = await startPinned(CLIENT_CORE, process.execPath, [SELF, '--relay-client']);
      procs.push(client);
      const sink = Number(client.first['sink']);
      // Both with --trace-gc: their collections during the rounds are counted
      // (a count, not a time; the relay once ran a mark-compact per 32 MiB,
      // src/front/relay-reads.ts).
      const relayFront = await startOurs('relay', { routes: [{ serverName: 'beta.example', passthrough: `127.0.0.1:${sink}` }] }, ['--trace-gc']);
      const pipe = await startPinned(SERVER_CORE, process.execPath, ['--trace-gc', SELF, '--pipe-proxy', String(sink)]);
      procs.push(pipe);
      const relayGc = gcCounter(relayFront.p.child);
      const pipeGc = gcCounter(pipe.child);
      const hello = await buildEchClientHello(
        { serverName: 'beta.example', alpn: ['http/1.1'], keyShares: [{ group: NamedGroup.x25519, keyExchange: new Uint8Array(randomBytes(32)) }], supportedGroups: [NamedGroup.x25519], supportedVersions: [0x0304] },
        { config: echKey.config, sealer: createEchSealer },
      );
      const helloRecord = b64(writeRecords(ContentType.handshake, hello.outerMessage, 0x0301));
      // The same name without ECH: routed to the same backend by its outer
      // name, relayed by passthroughRaw (`stream.pipe`) in the same process.
      const plainHello = buildClientHello({ serverName: 'beta.example', alpn: ['http/1.1'], keyShares: [{ group: NamedGroup.x25519, keyExchange: new Uint8Array(randomBytes(32)) }], supportedGroups: [NamedGroup.x25519], supportedVersions: [0x0304] });
      const plainRecord = b64(writeRecords(ContentType.handshake, encodeClientHelloMessage(plainHello), 0x0301));
      const measure = async (port: number, pid: number, cpu: number[], calls: number[] = [], record = helloRecord) => {
        const at = client.lines.length;
        const before = cpuNs(pid);
        const callsBefore = ioSyscalls(pid);
        client.child.stdin!.write(`127.0.0.1 ${port} ${record} ${relayMib}\n`);
        for (let i = 0; i < 6000 && client.lines.length === at; i++) await sleep(50);
        const line = client.lines[at];
        if (!line) throw new Error('relay client gave no answer');
        cpu.push((cpuNs(pid) - before) / relayMib);
        calls.push((ioSyscalls(pid) - callsBefore) / relayMib);
        return (JSON.parse(line) as { bytesPerSecond: number }).bytesPerSecond;
      };
      // One untimed run each (JIT, socket buffers), then rounds of all
      // three, interleaved, the order reversed every other round so that a
      // drift in the machine's load lands on all alike.
      await measure(relayFront.port, relayFront.p.pid, []);
      await measure(Number(pipe.first['listening']), pipe.pid, []);
      await measure(relayFront.port, relayFront.p.pid, [], [], plainRecord);
      const relay: number[] = [];
      const plain: number[] = [];
      const relayCpu: number[] = [];
      const plainCpu: number[] = [];
      const relayCalls: number[] = [];
      const plainCalls: number[] = [];
      const raw: number[] = [];
      const rawCpu: number[] = [];
      const gcBefore = { relay: { ...relayGc }, pipe: { ...pipeGc } };
      for (let r = 0; r < relayRounds; r++) {
        const both = [
          async () => relay.push(await measure(relayFront.port, relayFront.p.pid, relayCpu, relayCalls)),
          async () => plain.push(await measure(Number(pipe.first['listening']), pipe.pid, plainCpu, plainCalls)),
          async () => raw.push(await measure(relayFront.port, relayFront.p.pid, rawCpu, [], plainRecord)),
        ];
        if (r % 2) both.reverse();
        for (const m of both) await m();
      }
      const best = (xs: number[]) => Math.max(...xs);
      const least = (xs: number[]) => Math.min(...xs);
      const median = (xs: number[]) => {
        const o = [...xs].sort((a, b) => a - b);
        const m = o.length >> 1;
        return o.length % 2 ? o[m]! : (o[m - 1]! + o[m]!) / 2;
      };
      const mibs = (bps: number) => Math.round(bps / 1048576);
      const us = (ns: number) => Math.round(ns / 1000);
      figures['relay_rounds'] = relayRounds;
      figures['relay_mib_per_s'] = { best: mibs(best(relay)), median: mibs(median(relay)) };
      figures['pipe_mib_per_s'] = { best: mibs(best(plain)), median: mibs(median(plain)) };
      // Server CPU per MiB relayed: steadier than bytes/s on a shared machine.
      figures['relay_cpu_us_per_mib'] = { least: us(least(relayCpu)), median: us(median(relayCpu)) };
      figures['pipe_cpu_us_per_mib'] = { least: us(least(plainCpu)), median: us(median(plainCpu)) };
      // The target: bytes/s, each round's relay over the pipe measured next
      // to it, the median of those ratios (a slow round from other load
      // moves one pair, not the figure); also best over best.
      figures['relay_over_pipe'] = ratio(median(relay.map((x, i) => x / plain[i]!)), 1);
      figures['relay_over_pipe_best'] = ratio(best(relay), best(plain));
      figures['relay_over_pipe_rounds'] = relay.map((x, i) => ratio(x, plain[i]!));
      figures['relay_cpu_over_pipe'] = ratio(median(relayCpu.map((x, i) => x / plainCpu[i]!)), 1);
      figures['relay_cpu_over_pipe_least'] = ratio(least(relayCpu), least(plainCpu));
      // The same process relaying a connection without ECH for the
      // passthrough name (passthroughRaw: no ClientHello to decrypt or
      // sniff): what the process costs, apart from the split-mode relay's code.
      figures['raw_mib_per_s'] = { best: mibs(best(raw)), median: mibs(median(raw)) };
      figures['raw_cpu_us_per_mib'] = { least: us(least(rawCpu)), median: us(median(rawCpu)) };
      figures['relay_over_raw'] = ratio(median(relay.map((x, i) => x / raw[i]!)), 1);
      figures['relay_cpu_over_raw'] = ratio(median(relayCpu.map((x, i) => x / rawCpu[i]!)), 1);
      // read/write system calls per MiB (/proc/PID/io syscr + syscw): a count, moved by load only through read sizes.
      figures['relay_syscalls_per_mib'] = Math.round(median(relayCalls));
      figures['pipe_syscalls_per_mib'] = Math.round(median(plainCalls));
      figures['relay_payload_mib'] = relayMib;
      // Collections during all the rounds (3 x relay_rounds x relay_payload_mib
      // relayed by serve, relay_rounds x relay_payload_mib by the pipe proxy).
      const gcDuring = (now: GcCount, before: GcCount) => ({ markCompacts: now.markCompacts - before.markCompacts, scavenges: now.scavenges - before.scavenges });
      figures['relay_gc'] = gcDuring(relayGc, gcBefore.relay);
      figures['pipe_gc'] = gcDuring(pipeGc, gcBefore.pipe);
      client.child.stdin!.end();
      for (const p of procs.splice(0)) await p.stop();
    }

    // RSS per idle established ECH connection.
    if (!skip.has('memory')) {
      const mem = await startOurs('memory', { limits: { maxConcurrentHandshakes: 100_000, firstFlightTimeoutMs: 600_000, handshakeTimeoutMs: 600_000 } });
      // Warm up (JIT, pools) with connections that close, then a baseline.
      check({ name: 'memory warm-up', expect: 'accepted' } as Case, await drive(harness, ech(mem.port, ourList), 300), 300);
      await sleep(1500);
      const base = rssBytes(mem.p.pid);
      const hold = await startPinned(CLIENT_CORE, process.execPath, [SELF, '--hold', String(mem.port), '--hold', String(conns), '--hold', ourList, '--hold', cert], 900_000);
      procs.push(hold);
      await sleep(3000);
      const after = rssBytes(mem.p.pid);
      const held = Number(hold.first['held']);
      figures['idle_conns'] = held;
      figures['idle_conn_failed'] = hold.first['failed'];
      figures['idle_conn_bytes'] = Math.round((after - base) / held);
      figures['idle_rss_base_mib'] = Math.round(base / 1048576);
      hold.child.stdin!.end();
      for (const p of procs.splice(0)) await p.stop();
    }

    load.push(loadavg()[0]!);
    figures['loadavg_1m'] = load.map((x) => Math.round(x * 100) / 100);
    figures['node'] = process.version;
    figures['cpu'] = cpus()[0]?.model;
    const targets: [string, (v: number) => boolean, string][] = [
      ['ours_over_node', (v) => v <= 1.0, '<= 1.0'],
      ['ours_over_boringssl', (v) => v <= 2.0, '<= 2.0'],
      ['workers2_over_workers1', (v) => v <= 1.1, '<= 1.1'],
      ['relay_over_pipe', (v) => v >= 0.9, '>= 0.9'],
      ['idle_conn_bytes', (v) => v <= 32 * 1024, '<= 32768'],
    ];
    const missed = targets.filter(([k, ok]) => typeof figures[k] === 'number' && !ok(figures[k] as number)).map(([k, , t]) => `${k} = ${String(figures[k])} (target ${t})`);
    figures['missed'] = missed;
    process.stdout.write(`${JSON.stringify(figures, null, 2)}\n`);
    if (missed.length) process.stderr.write(`MISSED: ${missed.join('; ')}\n`);
    return missed.length ? 1 : 0;
  } finally {
    for (const p of procs) await p.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`bench:handshake: ${(e as Error).message}\n`);
    process.exitCode = 2;
  },
);
