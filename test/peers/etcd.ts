// Test-only: a real etcd cluster on loopback (Debian's etcd-server), each
// member with its own --data-dir in a temp dir, stopped by PID.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const ETCD_INSTALL_HINT = 'etcd is not installed: apt-get install -y etcd-server etcd-client';

/** Whether the etcd binary is there. */
export function etcdAvailable(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => res(p));
    });
  });
}

export interface EtcdMember {
  name: string;
  clientUrl: string;
  running(): boolean;
  stop(): Promise<void>;
  start(): void;
}

export interface EtcdCluster {
  endpoints: string[];
  members: EtcdMember[];
  /** etcdctl against the cluster; returns stdout. */
  ctl(args: string[]): string;
  stop(): Promise<void>;
}

/** Client TLS for the cluster: server cert/key (SAN localhost), and the CA client certificates must chain to. */
export interface EtcdTls {
  cert: string;
  key: string;
  ca: string;
  /** etcdctl's client certificate. */
  clientCert: string;
  clientKey: string;
}

export async function startEtcdCluster(size = 3, tls?: EtcdTls): Promise<EtcdCluster> {
  if (!etcdAvailable()) throw new Error(ETCD_INSTALL_HINT);
  const dir = await mkdtemp(join(tmpdir(), 'ech-etcd-'));
  const ports = [];
  for (let i = 0; i < size; i++) ports.push({ client: await freePort(), peer: await freePort() });
  const names = ports.map((_, i) => `etcd${i}`);
  const cluster = ports.map((p, i) => `${names[i]}=http://127.0.0.1:${p.peer}`).join(',');
  const members: EtcdMember[] = ports.map((p, i) => {
    let child: ChildProcess | undefined;
    let out = '';
    const args = [
      '--name', names[i]!,
      '--data-dir', join(dir, names[i]!),
      '--listen-client-urls', `${tls ? 'https' : 'http'}://127.0.0.1:${p.client}`,
      '--advertise-client-urls', tls ? `https://localhost:${p.client}` : `http://127.0.0.1:${p.client}`,
      ...(tls ? ['--cert-file', tls.cert, '--key-file', tls.key, '--trusted-ca-file', tls.ca, '--client-cert-auth'] : []),
      '--listen-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-advertise-peer-urls', `http://127.0.0.1:${p.peer}`,
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', 'ech-test',
      '--heartbeat-interval', '100',
      '--election-timeout', '1000',
      '--log-level', 'warn',
    ];
    const m: EtcdMember = {
      name: names[i]!,
      clientUrl: tls ? `https://localhost:${p.client}` : `http://127.0.0.1:${p.client}`,
      running: () => !!child && child.exitCode === null && child.signalCode === null,
      start() {
        out = '';
        child = spawn('etcd', args, { stdio: ['ignore', 'pipe', 'pipe'] });
        child.stdout!.on('data', (d) => (out = (out + d).slice(-4000)));
        child.stderr!.on('data', (d) => (out = (out + d).slice(-4000)));
      },
      async stop() {
        const c = child;
        if (!c || c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await exited;
      },
    };
    return m;
  });
  for (const m of members) m.start();
  const endpoints = members.map((m) => m.clientUrl);
  const ctl = (args: string[]) => {
    const auth = tls ? ['--cacert', tls.ca, '--cert', tls.clientCert, '--key', tls.clientKey] : [];
    const r = spawnSync('etcdctl', ['--endpoints', endpoints.join(','), '--command-timeout=3s', ...auth, ...args], { encoding: 'utf8', env: { ...process.env, ETCDCTL_API: '3' } });
    if (r.status !== 0) throw new Error(`etcdctl ${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
  const end = Date.now() + 20_000;
  for (;;) {
    try {
      ctl(['endpoint', 'health']);
      break;
    } catch (e) {
      if (Date.now() > end) {
        await Promise.all(members.map((m) => m.stop()));
        throw new Error(`etcd cluster did not become healthy: ${(e as Error).message}`);
      }
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  return {
    endpoints,
    members,
    ctl,
    async stop() {
      await Promise.all(members.map((m) => m.stop()));
      await rm(dir, { recursive: true, force: true });
    },
  };
}
