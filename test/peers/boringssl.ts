/**
 * BoringSSL peer for tests: builds test/peers/boringssl/harness.c against
 * Debian's android-libboringssl and drives it as a child process.
 *
 * A missing library, header or compiler is an error, never a skip: in CI the
 * peer is installed by .ci/run, and a test that silently did not talk to
 * BoringSSL would prove nothing. (Outside CI, a test file tagged peer-boringssl
 * is skipped before it gets here when detection finds no BoringSSL:
 * test/peers/detect.ts, test/helpers/peers.ts.)
 *
 * Every child is spawned with a bounded lifetime and tracked by PID; servers
 * are killed on close() and, as a last resort, when this process exits (the
 * harness also asks the kernel for SIGTERM when its parent dies).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Repository root (this file is test/peers/boringssl.ts). */
const REPO_ROOT = join(HERE, '..', '..');
export const HARNESS_SOURCE = join(HERE, 'boringssl', 'harness.c');
export const HARNESS_BINARY = join(REPO_ROOT, '.cache', 'boringssl-harness');

const MULTIARCH: Record<string, string> = { x64: 'x86_64-linux-gnu', arm64: 'aarch64-linux-gnu' };
/** BoringSSL headers (openssl/ssl.h, openssl/hpke.h): $BORINGSSL_INCLUDE_DIR or Debian's path. */
export const INCLUDE_DIR = process.env['BORINGSSL_INCLUDE_DIR'] ?? '/usr/include/android';
/** BoringSSL libssl.so and libcrypto.so: $BORINGSSL_LIB_DIR or Debian's path. */
export const LIB_DIR =
  process.env['BORINGSSL_LIB_DIR'] ?? `/usr/lib/${MULTIARCH[process.arch] ?? `${process.arch}-linux-gnu`}/android`;

const INSTALL_HINT = 'install the peer with: apt-get install -y android-libboringssl android-libboringssl-dev gcc';

// ------------------------------------------------------------------ types

export interface AlertInfo {
  code: number;
  name: string;
}

/** Fields shared by client and server results. */
export interface SessionInfo {
  /** Negotiated ALPN protocol, or null. */
  alpn: string | null;
  /** e.g. "TLSv1.3" (null if no cipher was negotiated). */
  version: string | null;
  /** IETF name, e.g. "TLS_AES_128_GCM_SHA256". */
  cipher: string | null;
  /** Key exchange group, e.g. "X25519", "P-256". */
  group: string | null;
  /** Whether a HelloRetryRequest was used. */
  hrr: boolean;
  /** Signature algorithm the peer used in CertificateVerify (client side), e.g. "ecdsa_sha256". */
  peerSignatureAlgorithm: string | null;
  /** OpenSSL error string plus alerts, or null. */
  error: string | null;
  /** Reason part of the first error, e.g. "ECH_REJECTED", "TIMEOUT", "EOF". */
  errorReason: string | null;
  /** Last fatal/warning alert sent (close_notify excluded). */
  alertSent: AlertInfo | null;
  /** Last alert received (close_notify excluded). */
  alertReceived: AlertInfo | null;
}

export interface ClientAttempt extends SessionInfo {
  handshake: boolean;
  echAccepted: boolean;
  /** The handshake failed with SSL_R_ECH_REJECTED. */
  echRejected: boolean;
  /** Base64 ECHConfigList from the server when rejected ("" = retry without ECH), else null. */
  retryConfigs: string | null;
  /**
   * An ECH config list was configured for this attempt (not GREASE). BoringSSL
   * silently sends no ECH when none of the configs is usable (non-X25519 KEM),
   * so assert on the server side too.
   */
  echConfigured: boolean;
  sni: string | null;
  peerCertSubject: string | null;
  /** null without a CA; with a CA: chain and name verified (public_name on ECH rejection). */
  verified: boolean | null;
  verifyError: string | null;
  /** Bytes read after `send` (UTF-8, invalid bytes as U+00XX), or null if nothing was sent/read. */
  response: string | null;
  responseB64: string | null;
}

export interface ClientResult extends ClientAttempt {
  /** A second connection was made after an ECH rejection (`retry: true`). */
  retried: boolean;
  /** Present when retried: the second attempt went out without ECH (empty retry list). */
  retriedWithoutEch?: boolean;
  /** Present when retried: the first attempt's retry configs (base64). */
  firstRetryConfigs?: string;
  /** Present when retried: the first attempt. */
  first?: ClientAttempt;
  /** Harness exit code (0 iff the (last) handshake succeeded). */
  exitCode: number;
  stderr: string;
}

export interface ClientOptions {
  /** Default 127.0.0.1. */
  host?: string;
  port: number;
  /** server_name (the inner one when ECH is used). */
  sni: string;
  /** ECHConfigList, raw bytes or base64. */
  echConfigList?: Uint8Array | string;
  /** Send a GREASE ECH extension when no config is set. */
  grease?: boolean;
  alpn?: string[];
  /** CA file: verify chain and hostname (BoringSSL checks public_name itself on rejection). */
  ca?: string;
  /** BoringSSL group names in preference order, e.g. ['X25519', 'P-256']. */
  groups?: string[];
  /** Add Ed25519 to the signature algorithms the client accepts. */
  ed25519?: boolean;
  /** Application data to write after the handshake; one read follows (the echo). */
  send?: string | Uint8Array;
  /** Read until EOF/close_notify instead of once. */
  read?: boolean;
  /** On ECH rejection, reconnect once with the retry configs. */
  retry?: boolean;
  /** Socket timeout inside the harness, seconds (default 10). */
  socketTimeoutSec?: number;
  /** Kill the harness after this long (default 30 s). */
  timeoutMs?: number;
}

export interface MarshalledEchConfig {
  /** One ECHConfig as SSL_marshal_ech_config wrote it. */
  echConfig: Buffer;
  /** u16 length + echConfig. */
  echConfigList: Buffer;
  /** Raw X25519 private key (32 bytes). */
  privateKey: Buffer;
  /** Raw X25519 public key (32 bytes). */
  publicKey: Buffer;
  configId: number;
  publicName: string;
}

export interface ServerEchKey {
  privateKey: Uint8Array | string;
  echConfig: Uint8Array | string;
}

export interface ServerOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (pick a free port). */
  port?: number;
  /** Certificate chain PEM file. */
  cert: string;
  /** Private key PEM file. */
  key: string;
  /** ECH keys; the first is a retry config (all of them with allRetry). None = plain server / split-mode backend. */
  echKeys?: ServerEchKey[];
  allRetry?: boolean;
  groups?: string[];
  /** Server preference order. */
  alpn?: string[];
  /** Exit after one connection. */
  once?: boolean;
  /** Echo application data back (default true). */
  echo?: boolean;
  /** Socket timeout inside the harness, seconds (default 10). */
  socketTimeoutSec?: number;
  /** The harness exits on its own after this many seconds (default 300). */
  lifetimeSec?: number;
  /** How long to wait for the listening line (default 15 s). */
  startTimeoutMs?: number;
}

export interface ServerConnectionResult extends SessionInfo {
  connection: true;
  /** SSL_accept succeeded and the client's Finished was processed. */
  handshake: boolean;
  /** SSL_accept returned 1. */
  accepted: boolean;
  echAccepted: boolean;
  /** SSL_get_servername: the inner name when ECH was accepted. */
  sni: string | null;
  /** ECH extension in the ClientHello the handshake used: "inner", "outer", null (absent). */
  clientHelloEch: 'inner' | 'outer' | `type-${number}` | null;
  clientHelloSni: string | null;
  /** Application data read (UTF-8, invalid bytes as U+00XX). */
  received: string;
  receivedBytes: number;
  peerClosed: boolean;
  peer: string;
}

export interface BoringServer {
  port: number;
  pid: number;
  /** Retry ECHConfigList the server sends (base64), or null without ECH keys. */
  echConfigList: string | null;
  /** Connection results, in order, as they arrive. */
  readonly results: readonly ServerConnectionResult[];
  /** Resolves with the result of connection number `index` (0-based), waiting up to timeoutMs (default 15 s). */
  result(index: number, timeoutMs?: number): Promise<ServerConnectionResult>;
  /** Resolves once `count` results arrived. */
  waitForResults(count: number, timeoutMs?: number): Promise<ServerConnectionResult[]>;
  /** Resolves when the process exited (e.g. after `once`). */
  readonly exited: Promise<number | null>;
  stderr(): string;
  /** Kills the process (SIGTERM, then SIGKILL) and waits for it. Idempotent. */
  close(): Promise<void>;
}

// ------------------------------------------------------------- children

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function track(child: ChildProcess): void {
  live.add(child);
  child.once('exit', () => live.delete(child));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of live) {
        if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
          try {
            process.kill(c.pid, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      }
    });
  }
}

function killChild(child: ChildProcess, graceMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) {
      resolve();
      return;
    }
    const pid = child.pid;
    const hard = setTimeout(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }, graceMs);
    child.once('exit', () => {
      clearTimeout(hard);
      resolve();
    });
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      clearTimeout(hard);
      resolve();
    }
  });
}

interface RunOutput {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs: number): Promise<RunOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    track(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      void killChild(child, 500);
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (timedOut) {
        reject(new Error(`${cmd} ${args[0] ?? ''} timed out after ${timeoutMs} ms\nstderr:\n${stderr}`));
        return;
      }
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function lastJsonLine(stdout: string, what: string, stderr: string): Record<string, unknown> {
  const lines = stdout.split('\n').filter((l) => l.trim() !== '');
  const last = lines[lines.length - 1];
  if (last === undefined) throw new Error(`${what}: no output\nstderr:\n${stderr}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(last);
  } catch {
    throw new Error(`${what}: output is not JSON: ${last}\nstderr:\n${stderr}`);
  }
  if (typeof parsed !== 'object' || parsed === null) throw new Error(`${what}: unexpected output ${last}`);
  const obj = parsed as Record<string, unknown>;
  if (obj['fatal'] === true) throw new Error(`${what}: harness refused to run:\n${stderr}`);
  return obj;
}

// ---------------------------------------------------------------- build

async function mtimeMs(path: string): Promise<number | null> {
  try {
    return (await stat(path)).mtimeMs;
  } catch {
    return null;
  }
}

let building: Promise<string> | null = null;

/**
 * Compiles harness.c into .cache/boringssl-harness (rebuilt when the source
 * is newer) and returns the binary's path. Throws when BoringSSL or gcc is
 * missing.
 */
export function buildHarness(): Promise<string> {
  building ??= doBuild().catch((err: unknown) => {
    building = null;
    throw err;
  });
  return building;
}

async function doBuild(): Promise<string> {
  const header = join(INCLUDE_DIR, 'openssl', 'ssl.h');
  const hpke = join(INCLUDE_DIR, 'openssl', 'hpke.h');
  const libssl = join(LIB_DIR, 'libssl.so');
  const libcrypto = join(LIB_DIR, 'libcrypto.so');
  for (const [path, what] of [
    [header, 'BoringSSL headers (android-libboringssl-dev)'],
    [hpke, 'BoringSSL HPKE header (android-libboringssl-dev)'],
    [libssl, 'BoringSSL libssl (android-libboringssl / -dev)'],
    [libcrypto, 'BoringSSL libcrypto (android-libboringssl / -dev)'],
  ] as const) {
    if (!existsSync(path)) throw new Error(`BoringSSL peer unavailable: ${what} not found at ${path}; ${INSTALL_HINT}`);
  }

  const src = await mtimeMs(HARNESS_SOURCE);
  if (src === null) throw new Error(`harness source missing: ${HARNESS_SOURCE}`);
  const bin = await mtimeMs(HARNESS_BINARY);
  if (bin !== null && bin >= src) return HARNESS_BINARY;

  await mkdir(dirname(HARNESS_BINARY), { recursive: true });
  // Parallel test workers may build at once: compile to a private name, then
  // rename atomically over the target.
  const tmp = `${HARNESS_BINARY}.${process.pid}.${Date.now()}.tmp`;
  const args = [
    '-O2', '-Wall', `-I${INCLUDE_DIR}`, HARNESS_SOURCE, '-o', tmp,
    `-L${LIB_DIR}`, `-Wl,-rpath,${LIB_DIR}`, '-lssl', '-lcrypto',
  ];
  let out: RunOutput;
  try {
    out = await run('gcc', args, 120_000);
  } catch (err) {
    await rm(tmp, { force: true });
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new Error(`gcc not found; ${INSTALL_HINT}`);
    throw err;
  }
  if (out.code !== 0) {
    await rm(tmp, { force: true });
    throw new Error(`compiling the BoringSSL harness failed (gcc exit ${out.code}):\n${out.stderr}`);
  }
  await rename(tmp, HARNESS_BINARY);
  return HARNESS_BINARY;
}

// --------------------------------------------------------------- client

function b64(v: Uint8Array | string): string {
  return typeof v === 'string' ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
}

/** Runs one BoringSSL client connection (two with `retry` after a rejection). */
export async function runClient(opts: ClientOptions): Promise<ClientResult> {
  const bin = await buildHarness();
  const args = ['client', '--connect', `${opts.host ?? '127.0.0.1'}:${opts.port}`, '--sni', opts.sni];
  if (opts.echConfigList !== undefined) args.push('--ech-config-list', b64(opts.echConfigList));
  if (opts.grease) args.push('--grease');
  if (opts.alpn && opts.alpn.length > 0) args.push('--alpn', opts.alpn.join(','));
  if (opts.ca !== undefined) args.push('--ca', opts.ca);
  if (opts.groups && opts.groups.length > 0) args.push('--groups', opts.groups.join(':'));
  if (opts.ed25519) args.push('--ed25519');
  if (opts.send !== undefined) {
    args.push('--send-b64', typeof opts.send === 'string' ? Buffer.from(opts.send, 'utf8').toString('base64') : b64(opts.send));
  }
  if (opts.read) args.push('--read');
  if (opts.retry) args.push('--retry');
  if (opts.socketTimeoutSec !== undefined) args.push('--timeout', String(opts.socketTimeoutSec));

  const out = await run(bin, args, opts.timeoutMs ?? 30_000);
  const obj = lastJsonLine(out.stdout, 'BoringSSL client', out.stderr);
  if (typeof obj['handshake'] !== 'boolean') {
    throw new Error(`BoringSSL client: unexpected output ${out.stdout}\nstderr:\n${out.stderr}`);
  }
  return { ...(obj as unknown as ClientAttempt & { retried: boolean }), exitCode: out.code ?? -1, stderr: out.stderr };
}

// ------------------------------------------------------- marshal-config

/** Generates an X25519 HPKE key and the ECHConfig BoringSSL marshals for it. */
export async function marshalConfig(
  publicName: string,
  configId: number,
  opts: { maxNameLen?: number } = {},
): Promise<MarshalledEchConfig> {
  const bin = await buildHarness();
  const args = ['marshal-config', '--public-name', publicName, '--config-id', String(configId)];
  if (opts.maxNameLen !== undefined) args.push('--max-name-len', String(opts.maxNameLen));
  const out = await run(bin, args, 15_000);
  if (out.code !== 0) throw new Error(`BoringSSL marshal-config failed (exit ${out.code}):\n${out.stderr}`);
  const obj = lastJsonLine(out.stdout, 'BoringSSL marshal-config', out.stderr);
  const buf = (k: string): Buffer => {
    const v = obj[k];
    if (typeof v !== 'string') throw new Error(`marshal-config: missing ${k}`);
    return Buffer.from(v, 'base64');
  };
  return {
    echConfig: buf('echConfig'),
    echConfigList: buf('echConfigList'),
    privateKey: buf('privateKey'),
    publicKey: buf('publicKey'),
    configId: Number(obj['configId']),
    publicName: String(obj['publicName']),
  };
}

// --------------------------------------------------------------- server

/** Starts a BoringSSL TLS 1.3 server (ECH-capable when given keys) and waits until it listens. */
export async function startServer(opts: ServerOptions): Promise<BoringServer> {
  const bin = await buildHarness();
  const args = ['server', '--listen', `${opts.host ?? '127.0.0.1'}:${opts.port ?? 0}`, '--cert', opts.cert, '--key', opts.key];
  for (const k of opts.echKeys ?? []) args.push('--ech-key', b64(k.privateKey), '--ech-config', b64(k.echConfig));
  if (opts.allRetry) args.push('--all-retry');
  if (opts.groups && opts.groups.length > 0) args.push('--groups', opts.groups.join(':'));
  if (opts.alpn && opts.alpn.length > 0) args.push('--alpn', opts.alpn.join(','));
  if (opts.once) args.push('--once');
  if (opts.echo === false) args.push('--no-echo');
  if (opts.socketTimeoutSec !== undefined) args.push('--timeout', String(opts.socketTimeoutSec));
  args.push('--lifetime', String(opts.lifetimeSec ?? 300));

  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  track(child);
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    if (stderr.length > 1 << 20) stderr = stderr.slice(-(1 << 19));
  });

  const results: ServerConnectionResult[] = [];
  const waiters = new Set<() => void>();
  const notify = (): void => {
    for (const w of [...waiters]) w();
  };
  let exitCode: number | null | undefined;
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => {
      exitCode = code;
      notify();
      resolve(code);
    });
  });

  let ready!: (v: { port: number; echConfigList: string | null }) => void;
  let fail!: (e: Error) => void;
  const listening = new Promise<{ port: number; echConfigList: string | null }>((res, rej) => {
    ready = res;
    fail = rej;
  });
  child.once('error', (err) => fail(err));
  void exited.then((code) => fail(new Error(`BoringSSL server exited (code ${code}) before listening:\n${stderr}`)));

  const rl = createInterface({ input: child.stdout });
  rl.on('line', (line) => {
    if (line.trim() === '') return;
    let obj: Record<string, unknown>;
    try {
      obj = JSON.parse(line) as Record<string, unknown>;
    } catch {
      stderr += `\n[non-JSON stdout] ${line}`;
      return;
    }
    if (typeof obj['listening'] === 'number') {
      ready({ port: obj['listening'], echConfigList: typeof obj['echConfigList'] === 'string' ? obj['echConfigList'] : null });
    } else if (obj['connection'] === true) {
      results.push(obj as unknown as ServerConnectionResult);
      notify();
    } else if (obj['fatal'] === true) {
      fail(new Error(`BoringSSL server refused to start:\n${stderr}`));
    }
  });

  const startTimeoutMs = opts.startTimeoutMs ?? 15_000;
  let startTimer: NodeJS.Timeout | undefined;
  try {
    const { port, echConfigList } = await Promise.race([
      listening,
      new Promise<never>((_, rej) => {
        startTimer = setTimeout(() => rej(new Error(`BoringSSL server did not listen within ${startTimeoutMs} ms:\n${stderr}`)), startTimeoutMs);
      }),
    ]);
    clearTimeout(startTimer);

    const waitFor = (count: number, timeoutMs: number): Promise<ServerConnectionResult[]> =>
      new Promise((resolve, reject) => {
        const check = (): boolean => {
          if (results.length >= count) {
            cleanup();
            resolve(results.slice(0, count));
            return true;
          }
          if (exitCode !== undefined) {
            cleanup();
            reject(new Error(`BoringSSL server exited (code ${exitCode}) after ${results.length} of ${count} results:\n${stderr}`));
            return true;
          }
          return false;
        };
        const timer = setTimeout(() => {
          cleanup();
          reject(new Error(`timed out waiting for ${count} BoringSSL server result(s), have ${results.length}:\n${stderr}`));
        }, timeoutMs);
        const waiter = (): void => void check();
        const cleanup = (): void => {
          clearTimeout(timer);
          waiters.delete(waiter);
        };
        if (!check()) waiters.add(waiter);
      });

    let closing: Promise<void> | null = null;
    return {
      port,
      pid: child.pid as number,
      echConfigList,
      results,
      result: async (index, timeoutMs = 15_000) => (await waitFor(index + 1, timeoutMs))[index] as ServerConnectionResult,
      waitForResults: (count, timeoutMs = 15_000) => waitFor(count, timeoutMs),
      exited,
      stderr: () => stderr,
      close: () => {
        closing ??= killChild(child).then(() => rl.close());
        return closing;
      },
    };
  } catch (err) {
    clearTimeout(startTimer);
    await killChild(child);
    rl.close();
    throw err;
  }
}
