/**
 * Bench cases for fleet mode: whole ECH handshakes over loopback against an
 * {@link EchFrontEnd} whose keys and ticket keys come from a
 * {@link FleetMember} (a one-member etcd started here), interleaved with
 * the same handshakes against a front end holding the same key from a
 * file. The figure is the ratio: fleet mode should add nothing, since the
 * watch puts the keys in memory and a handshake never talks to etcd.
 *
 * Needs the `etcd` binary (Debian `etcd-server`); without it the bench
 * reports `fleet_skipped` instead.
 *
 * @module
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EchKeySet } from '../keys/key-set.js';
import { generateEchKey } from '../keys/generate.js';
import { writeEchKeyFile } from '../keys/files.js';
import { EchFrontEnd } from '../front/front-end.js';
import { FleetMember } from '../fleet/member.js';
import { writeNewKekFile } from '../fleet/kek.js';
import { echClientOptions, echHandshake, makeBenchPki } from './keyless.js';
import type { BenchCase, Measurement } from './harness.js';

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

/**
 * Cases `handshake_fleet_ref_us` (key from a file) and `handshake_fleet_us`
 * (the same key through etcd), or none when etcd is not installed.
 * @group Bench
 * @example
 * ```ts
 * const f = await fleetBench();
 * for (const [k, m] of await runCases(f.cases)) results.set(k, m);
 * await f.close();
 * ```
 */
export async function fleetBench(): Promise<{
  cases: BenchCase[];
  summary(results: Map<string, Measurement>): Record<string, number | string>;
  close(): Promise<void>;
}> {
  if (spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status !== 0) {
    return { cases: [], summary: () => ({ fleet_skipped: 'etcd not installed (apt-get install etcd-server)' }), close: async () => undefined };
  }
  const dir = mkdtempSync(join(tmpdir(), 'ech-bench-fleet-'));
  const closers: Array<() => unknown> = [() => rmSync(dir, { recursive: true, force: true })];
  const close = async () => {
    for (const c of closers.reverse()) await c();
  };
  try {
    const [clientPort, peerPort] = [await freePort(), await freePort()];
    const etcd = spawn(
      'etcd',
      ['--name', 'bench', '--data-dir', join(dir, 'etcd'), '--listen-client-urls', `http://127.0.0.1:${clientPort}`, '--advertise-client-urls', `http://127.0.0.1:${clientPort}`,
        '--listen-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${peerPort}`, '--initial-cluster', `bench=http://127.0.0.1:${peerPort}`, '--log-level', 'error'],
      { stdio: 'ignore' },
    );
    closers.push(() => new Promise<void>((res) => {
      if (etcd.exitCode !== null) return res();
      etcd.once('exit', () => res());
      etcd.kill('SIGKILL');
    }));
    const pki = makeBenchPki(dir, { site: ['cover.example', 'alpha.example'] });
    const site = pki['site']!;
    const ech = generateEchKey({ publicName: 'cover.example' });
    await mkdir(join(dir, 'keys'), { mode: 0o700 });
    await writeEchKeyFile(join(dir, 'keys', 'ech.pem'), ech.config, ech.privateKeyRaw);
    const kek = await writeNewKekFile(join(dir, 'fleet.kek'));
    const member = new FleetMember({
      config: { etcd: { endpoints: [`http://127.0.0.1:${clientPort}`] }, prefix: '/bench', member: 'bench', kekFile: kek.source, leaseTtl: 5, ticketPeriod: 3600 },
      kek,
      importDirectory: join(dir, 'keys'),
    });
    closers.push(() => member.close());
    await member.start(20_000);
    // The first leader step also makes a ticket key; wait for it so both servers run with shared tickets configured alike.
    for (let i = 0; i < 100 && member.ticketSecrets.length === 0; i++) await new Promise((r) => setTimeout(r, 50));
    const handler = { handler: (s: { destroy(): void }) => s.destroy() };
    const routes = [{ serverName: 'alpha.example', ...site, action: handler }];
    const ref = new EchFrontEnd({ keys: new EchKeySet([ech]), publicName: site, routes, tls: { ticketKeys: member.ticketSecrets } });
    closers.push(() => ref.close());
    const fleet = new EchFrontEnd({ keys: member.keySet, publicName: site, routes, tls: { ticketKeys: member.ticketSecrets } });
    member.on('keys', (keys) => fleet.update({ keys }));
    closers.push(() => fleet.close());
    const refPort = (await ref.listen(0, '127.0.0.1')).port;
    const fleetPort = (await fleet.listen(0, '127.0.0.1')).port;
    const opts = echClientOptions(ech.config, 'alpha.example');
    const handshake = (port: number) => () => echHandshake(port, opts, 'alpha.example');
    await handshake(refPort)();
    await handshake(fleetPort)();
    // Both accepted ECH (not a rejection completing with the public name).
    for (const [name, fe] of [['reference', ref], ['fleet', fleet]] as const) {
      const accepted = () => /ech_connections_total\{status="accepted"\} [1-9]/.test(fe.metrics.render());
      for (let i = 0; i < 40 && !accepted(); i++) await new Promise((r) => setTimeout(r, 25));
      if (!accepted()) throw new Error(`fleet bench: the ${name} front end did not accept ECH`);
    }
    const options = { warmup: 20, warmupTimeMs: 1000, minIterations: 20, maxIterations: 400, maxTimeMs: 3000 };
    const cases: BenchCase[] = [
      { field: 'handshake_fleet_ref_us', label: 'ECH handshake over loopback, the fleet bench key loaded from a file (reference)', options, setup: () => handshake(refPort) },
      { field: 'handshake_fleet_us', label: 'the same handshake, the key (and ticket keys) from etcd through a FleetMember', options, setup: () => handshake(fleetPort) },
    ];
    return { cases, summary: () => ({}), close };
  } catch (e) {
    await close();
    throw e;
  }
}
