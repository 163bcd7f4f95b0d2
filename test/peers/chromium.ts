/**
 * Chromium (Debian package `chromium`) as a real ECH client, run headless
 * inside a test network namespace (netns.ts) where our DNS responder is the
 * resolver.
 *
 * Each run gets a fresh temporary HOME and --user-data-dir (removed
 * afterwards), a bounded lifetime, and is killed by PID (its process group).
 * Chromium offers ECH on its own once DNS gives it an HTTPS record with `ech`;
 * no feature flags. Certificates: trust a test CA through an NSS database in
 * the fresh HOME ($HOME/.pki/nssdb, `certutil -A -t "C,,"`) or pass
 * ignoreCertificateErrors.
 *
 * A missing browser is an error, never a skip.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from './netns.js';

export const CHROMIUM_INSTALL_HINT = 'apt-get install -y chromium libnss3-tools iproute2';

/** The browser binary: $CHROMIUM_BIN or /usr/bin/chromium (Debian's launcher script, which execs the real binary). */
export function chromiumBinary(): string {
  const bin = process.env['CHROMIUM_BIN'] ?? '/usr/bin/chromium';
  if (!existsSync(bin)) throw new Error(`Chromium not found at ${bin}: ${CHROMIUM_INSTALL_HINT}`);
  return bin;
}

/** The flags from INTEROP.md: headless, no QUIC (our servers are TCP), no background traffic. */
export const BASE_FLAGS = [
  '--headless',
  '--no-sandbox', // we are root in CI; the sandbox refuses to run as root
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-dev-shm-usage',
] as const;

export interface ChromiumOptions {
  netns: Netns;
  url: string;
  /** What to do with the page: print the DOM (default) or write a PNG. */
  output?: { dumpDom: true } | { screenshot: string };
  /** Kill after this long; default 30 s. */
  timeoutMs?: number;
  /** PEM of a CA to trust (NSS db in the fresh HOME). */
  trustCaPem?: string;
  /** --ignore-certificate-errors (for tests that are not about certificates). */
  ignoreCertificateErrors?: boolean;
  /** Write a NetLog (JSON; shows DNS answers, ECH configs, TLS errors) and return its text. */
  netLog?: boolean;
  extraFlags?: string[];
  /**
   * Written to `<profile>/Default/Preferences` before launch, e.g.
   * {@link NO_PRECONNECT_PREFERENCES}.
   */
  preferences?: Record<string, unknown>;
}

/**
 * Profile preferences that turn off "preload pages" (network prediction):
 * without them Chromium preconnects a second socket to the origin it is
 * navigating to, so one page load makes two TLS connections at once.
 * `net.network_prediction_options` 2 = "no preloading".
 */
export const NO_PRECONNECT_PREFERENCES: Record<string, unknown> = { net: { network_prediction_options: 2 } };

export interface ChromiumResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** We killed it: it ran past timeoutMs, or stop() was called. */
  killed: boolean;
  timedOut: boolean;
  /** The DOM with dumpDom. */
  stdout: string;
  stderr: string;
  durationMs: number;
  /** NetLog JSON text with `netLog: true` (read before the profile is removed). */
  netLog?: string;
}

export interface ChromiumRun {
  pid: number;
  /** Settles when Chromium has exited and its temporary dirs are removed. */
  done: Promise<ChromiumResult>;
  /** Kill it now (process group by PID) and wait for done. */
  stop(): Promise<ChromiumResult>;
}

function execOk(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 15_000, killSignal: 'SIGKILL', env }, (err, _o, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')}: ${err.message} ${stderr}`));
      else resolve();
    });
  });
}

/** Create $HOME/.pki/nssdb trusting `caPem` for TLS servers. */
export async function makeNssDb(home: string, caPem: string): Promise<string> {
  if (!existsSync('/usr/bin/certutil')) throw new Error(`certutil not found: ${CHROMIUM_INSTALL_HINT}`);
  const db = join(home, '.pki', 'nssdb');
  await mkdir(db, { recursive: true });
  await execOk('certutil', ['-N', '-d', `sql:${db}`, '--empty-password']);
  const caFile = join(home, 'test-ca.pem');
  await writeFile(caFile, caPem);
  await execOk('certutil', ['-A', '-d', `sql:${db}`, '-n', 'ech-server test CA', '-t', 'C,,', '-i', caFile]);
  return db;
}

/**
 * Start Chromium in the namespace. Readiness is the caller's business: await
 * the event you expect (a captured ClientHello, a request on your server),
 * then stop(); or await done (Chromium exits by itself after --dump-dom).
 */
export async function launchChromium(opts: ChromiumOptions): Promise<ChromiumRun> {
  const bin = chromiumBinary();
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const dir = await mkdtemp(join(tmpdir(), 'ech-chromium-'));
  const home = join(dir, 'home');
  const profile = join(dir, 'profile');
  await mkdir(home, { recursive: true });
  await mkdir(profile, { recursive: true });
  try {
    if (opts.trustCaPem) await makeNssDb(home, opts.trustCaPem);
    if (opts.preferences) {
      await mkdir(join(profile, 'Default'), { recursive: true });
      await writeFile(join(profile, 'Default', 'Preferences'), JSON.stringify(opts.preferences));
    }
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const netLogPath = join(dir, 'netlog.json');
  const flags = [...BASE_FLAGS, `--user-data-dir=${profile}`];
  if (opts.ignoreCertificateErrors) flags.push('--ignore-certificate-errors');
  if (opts.netLog) flags.push(`--log-net-log=${netLogPath}`, '--net-log-capture-mode=IncludeSensitive');
  const output = opts.output ?? { dumpDom: true };
  if ('screenshot' in output) flags.push(`--screenshot=${output.screenshot}`);
  else flags.push('--dump-dom');
  flags.push(...(opts.extraFlags ?? []), opts.url);

  const env: NodeJS.ProcessEnv = {
    PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: home,
    XDG_CONFIG_HOME: join(home, '.config'),
    XDG_CACHE_HOME: join(home, '.cache'),
    TMPDIR: dir,
    LANG: 'C.UTF-8',
  };
  const started = Date.now();
  let child: ChildProcess;
  try {
    child = opts.netns.spawn(bin, flags, { env, lifetimeSec: Math.ceil(timeoutMs / 1000) + 10 });
  } catch (e) {
    await rm(dir, { recursive: true, force: true });
    throw e;
  }
  const pid = child.pid!;
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let killed = false;
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = killed = true;
    void opts.netns.kill(child, 2000);
  }, timeoutMs);
  const done = new Promise<ChromiumResult>((resolve) => {
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      void (async () => {
        let netLog: string | undefined;
        if (opts.netLog) netLog = await readFile(netLogPath, 'utf8').catch(() => undefined);
        await rm(dir, { recursive: true, force: true }).catch(() => undefined);
        resolve({ code, signal, killed, timedOut, stdout, stderr, durationMs: Date.now() - started, netLog });
      })();
    });
  });
  return {
    pid,
    done,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        killed = true;
        await opts.netns.kill(child, 2000);
      }
      return done;
    },
  };
}

export interface NetLogEvent {
  /** Event type name, e.g. 'SSL_CONNECT', 'HOST_RESOLVER_DNS_TASK_EXTRACTION_RESULTS'. */
  type: string;
  /** 'PHASE_BEGIN' | 'PHASE_END' | 'PHASE_NONE' */
  phase: string;
  params: Record<string, unknown>;
}

export interface NetLog {
  events: NetLogEvent[];
  /** Chromium's net error names by code, e.g. -183 → 'ERR_ECH_NOT_NEGOTIATED'. */
  netErrorName(code: number): string | undefined;
  /** Names of every net_error in the log, e.g. ['ERR_ECH_NOT_NEGOTIATED', ...]. */
  netErrors(): string[];
}

/**
 * Parse a NetLog file (`netLog: true`). A log cut short by a kill lacks its
 * closing brackets; they are supplied.
 */
export function parseNetLog(text: string): NetLog {
  let raw: { constants: { logEventTypes: Record<string, number>; logEventPhase: Record<string, number>; netError: Record<string, number> }; events: Array<{ type: number; phase: number; params?: Record<string, unknown> }> };
  try {
    raw = JSON.parse(text);
  } catch {
    raw = JSON.parse(`${text.trimEnd().replace(/,$/, '')}]}`);
  }
  const invert = (o: Record<string, number>) => new Map(Object.entries(o).map(([k, v]) => [v, k]));
  const types = invert(raw.constants.logEventTypes);
  const phases = invert(raw.constants.logEventPhase);
  const errors = invert(raw.constants.netError);
  const events = raw.events.map((e) => ({ type: types.get(e.type) ?? String(e.type), phase: phases.get(e.phase) ?? String(e.phase), params: e.params ?? {} }));
  return {
    events,
    netErrorName: (code) => errors.get(code),
    netErrors: () =>
      events
        .map((e) => e.params['net_error'])
        .filter((c): c is number => typeof c === 'number')
        .map((c) => errors.get(c) ?? String(c)),
  };
}

/** Launch, wait for Chromium to exit by itself (or be killed at timeoutMs). */
export async function runChromium(opts: ChromiumOptions): Promise<ChromiumResult> {
  return (await launchChromium(opts)).done;
}
