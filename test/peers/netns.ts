/**
 * Network namespace for browser peers (Chromium): a private, self-contained
 * network where our test DNS server is THE resolver and our servers own the
 * test names, so nothing ever leaves the machine.
 *
 * Layout (all inside the namespace; nothing is routed out, the host's
 * interfaces and /etc are untouched):
 *
 *   lo          127.0.0.1           up
 *   echs0 <-veth-> echc0            both ends inside the namespace
 *   10.213.81.1/30 (SERVER_ADDRESS) services: DNS :53, TLS/capture servers
 *   10.213.81.2/30 (CLIENT_ADDRESS) spare address for clients
 *
 *   /etc/netns/<ns>/resolv.conf   nameserver 10.213.81.1
 *   /etc/netns/<ns>/nsswitch.conf hosts: files dns   (Chromium's built-in
 *                                 resolver only runs with a plain nsswitch)
 *   /etc/netns/<ns>/hosts         localhost only
 *
 * `ip netns exec` bind-mounts those files over /etc for the processes it
 * starts. Sockets are bound inside the namespace by a tiny child
 * (netns-bind.mjs) and handed to THIS process over the IPC channel, so the
 * servers themselves run in the test process, in TypeScript.
 *
 * Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN). Without it createNetns() throws
 * with a clear message; it never skips.
 *
 * Teardown (destroy(), also on failure during creation and, as a last resort,
 * on process exit): kill the process groups we started by PID, SIGKILL any
 * PID still inside the namespace (only our children can be in it), close the
 * handed-over sockets, `ip netns del`, remove /etc/netns/<ns>.
 */
import { execFile, execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { Socket as UdpSocket } from 'node:dgram';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import type { Server as TcpServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const BINDER = join(HERE, 'netns-bind.mjs');

/** The /30 used inside every namespace (never routed anywhere). */
export const SERVER_ADDRESS = '10.213.81.1';
export const CLIENT_ADDRESS = '10.213.81.2';
const PREFIX_LEN = 30;
const NAME_PREFIX = 'echt';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

export interface SpawnInNetnsOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  stdio?: StdioOptions;
  /**
   * Hard upper bound on the process's life, enforced by coreutils `timeout`
   * inside the namespace (so it holds even if this process dies). Seconds;
   * default 120.
   */
  lifetimeSec?: number;
}

export interface TcpSpec {
  proto: 'tcp';
  port: number;
  /** Default SERVER_ADDRESS. */
  host?: string;
}
export interface UdpSpec {
  proto: 'udp';
  port: number;
  host?: string;
}
type Bound<S> = S extends TcpSpec ? TcpServer : S extends UdpSpec ? UdpSocket : never;

export interface Netns {
  readonly name: string;
  /** Address of the services (DNS, servers): what the test names resolve to. */
  readonly address: string;
  readonly clientAddress: string;
  /** /etc/netns/<name> */
  readonly etcDir: string;
  /**
   * Start `command args` inside the namespace in its own process group,
   * bounded by `lifetimeSec`. Tracked: destroy() kills it.
   */
  spawn(command: string, args: string[], opts?: SpawnInNetnsOptions): ChildProcess;
  /** spawn() and collect output; on timeout the process group is killed. */
  run(command: string, args: string[], opts?: { timeoutMs?: number; env?: NodeJS.ProcessEnv }): Promise<RunResult>;
  /** Kill a process group this namespace started (SIGTERM, then SIGKILL after graceMs). */
  kill(child: ChildProcess, graceMs?: number): Promise<void>;
  /**
   * Bind sockets INSIDE the namespace and return them to this process:
   * TCP specs give a listening net.Server (attach 'connection'), UDP specs a
   * bound dgram.Socket (attach 'message'). Closed by destroy().
   */
  bind<const S extends ReadonlyArray<TcpSpec | UdpSpec>>(specs: S): Promise<{ [K in keyof S]: Bound<S[K]> }>;
  listenTcp(port: number, host?: string): Promise<TcpServer>;
  bindUdp(port: number, host?: string): Promise<UdpSocket>;
  /** PIDs currently inside the namespace (`ip netns pids`). */
  pids(): Promise<number[]>;
  destroy(): Promise<void>;
}

/** Throws unless running as root: namespaces need CAP_SYS_ADMIN. Never a skip. */
export function assertRoot(what = 'the browser tests'): void {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new Error(
      `${what} must run as root: they create a network namespace (ip netns add) and write /etc/netns/<ns>/. ` +
        `CI runs as root; locally use e.g. \`sudo npm run test:browser\`.`,
    );
  }
}

function exec(cmd: string, args: string[], timeoutMs = 10_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, killSignal: 'SIGKILL', encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}${stderr ? `\n${stderr.trim()}` : ''}`));
      else resolve(stdout);
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// ------------------------------------------------ last-resort exit cleanup

const live = new Map<string, { groups: Set<number> }>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const [name, { groups }] of live) {
      for (const pid of groups) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
      try {
        for (const pid of execFileSync('ip', ['netns', 'pids', name], { encoding: 'utf8', timeout: 5000 }).split(/\s+/)) {
          if (/^\d+$/.test(pid)) process.kill(Number(pid), 'SIGKILL');
        }
      } catch {
        /* best effort */
      }
      try {
        execFileSync('ip', ['netns', 'del', name], { timeout: 5000, stdio: 'ignore' });
      } catch {
        /* best effort */
      }
      rmSync(join('/etc/netns', name), { recursive: true, force: true });
    }
  });
}

/**
 * Namespaces named by this helper carry the creating PID (echt<pid>-<hex>).
 * One whose creator is gone was left by a killed run: delete it (the
 * namespace and its /etc/netns dir; nothing else is touched).
 */
async function removeStaleNamespaces(): Promise<void> {
  let list = '';
  try {
    list = await exec('ip', ['netns', 'list']);
  } catch {
    return;
  }
  for (const line of list.split('\n')) {
    const m = /^(echt(\d+)-[0-9a-f]+)\b/.exec(line.trim());
    if (!m || alive(Number(m[2]))) continue;
    await exec('ip', ['netns', 'del', m[1]!]).catch(() => undefined);
    await rm(join('/etc/netns', m[1]!), { recursive: true, force: true });
  }
}

// ------------------------------------------------------------ the namespace

export interface CreateNetnsOptions {
  /** Extra /etc/hosts lines inside the namespace (default: localhost only). */
  hosts?: string[];
}

export async function createNetns(opts: CreateNetnsOptions = {}): Promise<Netns> {
  assertRoot();
  if (!existsSync('/usr/sbin/ip') && !existsSync('/sbin/ip') && !existsSync('/usr/bin/ip')) {
    throw new Error('`ip` not found: apt-get install -y iproute2');
  }
  await removeStaleNamespaces();
  installExitHook();

  const name = `${NAME_PREFIX}${process.pid}-${randomBytes(3).toString('hex')}`;
  const etcDir = join('/etc/netns', name);
  const groups = new Set<number>();
  const children = new Set<ChildProcess>();
  const sockets = new Set<TcpServer | UdpSocket>();
  let created = false;
  let destroyed = false;

  const ipn = (...args: string[]) => exec('ip', ['-n', name, ...args]);

  function spawnIn(command: string, args: string[], o: SpawnInNetnsOptions = {}): ChildProcess {
    if (destroyed) throw new Error(`namespace ${name} is destroyed`);
    const lifetime = String(o.lifetimeSec ?? 120);
    // ip netns exec execs `timeout`, which runs the command as its child: the
    // PID we get is the group leader (detached => setsid), and `timeout`
    // kills the command even if this test process is SIGKILLed.
    const child = spawn('ip', ['netns', 'exec', name, 'timeout', '-k', '5', lifetime, command, ...args], {
      detached: true,
      stdio: o.stdio ?? ['ignore', 'pipe', 'pipe'],
      env: o.env ?? process.env,
      cwd: o.cwd,
    });
    if (child.pid === undefined) throw new Error(`could not start ${command} in ${name}`);
    const pid = child.pid;
    groups.add(pid);
    children.add(child);
    child.once('exit', () => {
      groups.delete(pid);
      children.delete(child);
    });
    return child;
  }

  async function killChild(child: ChildProcess, graceMs = 3000): Promise<void> {
    const pid = child.pid;
    if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    const signal = (sig: NodeJS.Signals) => {
      try {
        process.kill(-pid, sig);
      } catch {
        /* group already gone */
      }
    };
    signal('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((res) => (timer = setTimeout(() => res('late'), graceMs)));
    if ((await Promise.race([exited, late])) === 'late') {
      signal('SIGKILL');
      await Promise.race([exited, new Promise((res) => setTimeout(res, 2000))]);
    }
    clearTimeout(timer);
  }

  function run(command: string, args: string[], o: { timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
    const timeoutMs = o.timeoutMs ?? 30_000;
    const child = spawnIn(command, args, { env: o.env, lifetimeSec: Math.ceil(timeoutMs / 1000) + 5 });
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve) => {
      let timedOut = false;
      const t = setTimeout(() => {
        timedOut = true;
        void killChild(child, 1000);
      }, timeoutMs);
      child.once('close', (code, signal) => {
        clearTimeout(t);
        resolve({ code, signal, stdout, stderr, timedOut });
      });
    });
  }

  async function bind(specs: ReadonlyArray<TcpSpec | UdpSpec>): Promise<Array<TcpServer | UdpSocket>> {
    const full = specs.map((s) => ({ proto: s.proto, port: s.port, host: s.host ?? SERVER_ADDRESS }));
    const child = spawnIn(process.execPath, [BINDER, JSON.stringify(full)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      lifetimeSec: 30,
    });
    let stderr = '';
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const got: Array<TcpServer | UdpSocket | undefined> = new Array(full.length);
    try {
      await new Promise<void>((resolve, reject) => {
        let count = 0;
        const t = setTimeout(() => reject(new Error(`binding ${JSON.stringify(full)} in ${name} timed out; ${stderr}`)), 15_000);
        child.on('message', (msg: { index: number; error?: string }, handle?: TcpServer | UdpSocket) => {
          if (msg.error) {
            clearTimeout(t);
            reject(new Error(`cannot bind in ${name}: ${msg.error}`));
            return;
          }
          if (!handle) return;
          sockets.add(handle);
          got[msg.index] = handle;
          if (++count === full.length) {
            clearTimeout(t);
            resolve();
          }
        });
        child.once('exit', (code) => {
          clearTimeout(t);
          reject(new Error(`socket binder exited (${code}) before handing over all sockets: ${stderr}`));
        });
      });
    } catch (e) {
      for (const h of got) if (h) closeSocket(h);
      throw e;
    } finally {
      if (child.connected) child.send('done');
      await killChildWhenExited(child);
    }
    return got as Array<TcpServer | UdpSocket>;
  }

  async function killChildWhenExited(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((res) => child.once('exit', () => res()));
    const t = setTimeout(() => void killChild(child, 500), 3000);
    await exited;
    clearTimeout(t);
  }

  function closeSocket(h: TcpServer | UdpSocket): void {
    sockets.delete(h);
    try {
      if ('listen' in h) h.close();
      else h.close();
    } catch {
      /* already closed */
    }
  }

  async function pids(): Promise<number[]> {
    const out = await exec('ip', ['netns', 'pids', name]).catch(() => '');
    return out
      .split(/\s+/)
      .filter((p) => /^\d+$/.test(p))
      .map(Number);
  }

  async function destroy(): Promise<void> {
    if (destroyed) return;
    destroyed = true;
    const problems: string[] = [];
    await Promise.all([...children].map((c) => killChild(c)));
    for (const h of [...sockets]) closeSocket(h);
    if (created) {
      // Anything still inside was started by us (the namespace is unique to
      // this run): stragglers that left their process group.
      for (let round = 0; round < 30; round++) {
        const left = await pids();
        if (!left.length) break;
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
            problems.push(`killed straggler PID ${pid}`);
          } catch {
            /* gone */
          }
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      await exec('ip', ['netns', 'del', name]).catch((e: Error) => problems.push(e.message));
    }
    await rm(etcDir, { recursive: true, force: true }).catch((e: Error) => problems.push(e.message));
    live.delete(name);
    if (problems.some((p) => !p.startsWith('killed straggler'))) {
      throw new Error(`tearing down ${name}: ${problems.join('; ')}`);
    }
  }

  live.set(name, { groups });
  try {
    await exec('ip', ['netns', 'add', name]);
    created = true;
    await ipn('link', 'set', 'lo', 'up');
    await ipn('link', 'add', 'echs0', 'type', 'veth', 'peer', 'name', 'echc0');
    await ipn('addr', 'add', `${SERVER_ADDRESS}/${PREFIX_LEN}`, 'dev', 'echs0');
    await ipn('addr', 'add', `${CLIENT_ADDRESS}/${PREFIX_LEN}`, 'dev', 'echc0');
    await ipn('link', 'set', 'echs0', 'up');
    await ipn('link', 'set', 'echc0', 'up');
    // Wait until both ends are operationally up (carrier), so no link change
    // reaches a browser started right after this returns.
    for (let i = 0; i < 40; i++) {
      const links = await ipn('-o', 'link', 'show', 'type', 'veth');
      if ((links.match(/state UP/g) ?? []).length >= 2) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    // And until IPv6 duplicate-address detection is over: a link-local
    // address that turns from tentative to valid a second after the veth
    // came up is an address change, which Chromium reports as
    // net::ERR_NETWORK_CHANGED (a failed page load, or an HTTPS-record
    // lookup dropped, so the browser falls back to GREASE ECH).
    for (let i = 0; i < 60; i++) {
      const tentative = await ipn('-6', 'addr', 'show', 'tentative').catch(() => '');
      if (!tentative.trim()) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await mkdir(etcDir, { recursive: true });
    await writeFile(join(etcDir, 'resolv.conf'), `nameserver ${SERVER_ADDRESS}\noptions timeout:2 attempts:2\n`);
    await writeFile(join(etcDir, 'nsswitch.conf'), 'hosts: files dns\n');
    await writeFile(join(etcDir, 'hosts'), ['127.0.0.1 localhost', '::1 localhost', ...(opts.hosts ?? [])].join('\n') + '\n');
  } catch (e) {
    await destroy().catch(() => undefined);
    throw e;
  }

  const ns: Netns = {
    name,
    address: SERVER_ADDRESS,
    clientAddress: CLIENT_ADDRESS,
    etcDir,
    spawn: spawnIn,
    run,
    kill: killChild,
    bind: bind as Netns['bind'],
    listenTcp: async (port, host) => (await bind([{ proto: 'tcp', port, host }]))[0] as TcpServer,
    bindUdp: async (port, host) => (await bind([{ proto: 'udp', port, host }]))[0] as UdpSocket,
    pids,
    destroy,
  };
  return ns;
}

/** Run `fn` with a fresh namespace, destroyed afterwards whatever happens. */
export async function withNetns<T>(fn: (ns: Netns) => Promise<T>, opts?: CreateNetnsOptions): Promise<T> {
  const ns = await createNetns(opts);
  try {
    return await fn(ns);
  } finally {
    await ns.destroy();
  }
}
