// @module-tag peer-chromium
// @module-tag peer-netns
// Self-test of the browser-test plumbing (test/peers/netns.ts,
// dns-responder.ts, chromium.ts): the namespace is wired as documented, the
// system resolver inside it asks our DNS responder, and teardown leaves no
// process, namespace or /etc/netns directory behind, also on failure.
// Needs root (and chromium for the last case).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { Server } from 'node:net';
import { CLIENT_ADDRESS, SERVER_ADDRESS, assertRoot, createNetns, withNetns, type Netns } from '../peers/netns.js';
import { DnsResponder, buildZone } from '../peers/dns-responder.js';
import { chromiumBinary, launchChromium } from '../peers/chromium.js';

const run = promisify(execFile);

async function namespaceExists(name: string): Promise<boolean> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').some((l) => l.split(' ')[0] === name);
}

/** Running (not gone, not a zombie waiting for init to reap it). */
function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\d+ \(.*\) [ZX] /s.test(stat);
  } catch {
    return false;
  }
}

let ns: Netns | undefined;
let dns: DnsResponder;

beforeAll(async () => {
  assertRoot('the namespace self-test');
  ns = await createNetns();
  const [udp, tcp] = await ns.bind([
    { proto: 'udp', port: 53 },
    { proto: 'tcp', port: 53 },
  ] as const);
  dns = new DnsResponder(buildZone([{ name: 'private.test', address: ns.address }])).serveUdp(udp).serveTcp(tcp as Server);
}, 60_000);

afterAll(async () => {
  dns?.close();
  await ns?.destroy();
});

describe('network namespace', { timeout: 60_000 }, () => {
  it('has lo up, both veth ends with the /30 addresses, and its own resolv.conf / nsswitch.conf', async () => {
    expect(await namespaceExists(ns!.name)).toBe(true);
    const addr = await ns!.run('ip', ['-o', '-4', 'addr', 'show']);
    expect(addr.code).toBe(0);
    expect(addr.stdout).toMatch(/\blo\s+inet 127\.0\.0\.1\/8/);
    expect(addr.stdout).toContain(`echs0    inet ${SERVER_ADDRESS}/30`);
    expect(addr.stdout).toContain(`echc0    inet ${CLIENT_ADDRESS}/30`);
    // Nothing routes out: the only routes are the /30 and loopback.
    const routes = await ns!.run('ip', ['-4', 'route', 'show']);
    expect(routes.stdout).not.toMatch(/default/);
    const resolv = await ns!.run('cat', ['/etc/resolv.conf', '/etc/nsswitch.conf']);
    expect(resolv.stdout).toContain(`nameserver ${SERVER_ADDRESS}`);
    expect(resolv.stdout).toContain('hosts: files dns');
    expect(await readFile(`${ns!.etcDir}/resolv.conf`, 'utf8')).toContain(SERVER_ADDRESS);
  });

  it("the system resolver inside asks our responder: A for test names, NXDOMAIN for others", async () => {
    const hit = await ns!.run('getent', ['ahostsv4', 'private.test'], { timeoutMs: 10_000 });
    expect(hit.code).toBe(0);
    expect(hit.stdout).toContain(SERVER_ADDRESS);
    const miss = await ns!.run('getent', ['ahostsv4', 'www.google.com'], { timeoutMs: 10_000 });
    expect(miss.code).not.toBe(0);
    expect(dns.queries.some((q) => q.name === 'www.google.com' && q.rcode === 'NXDOMAIN')).toBe(true);
  });

  it('kills processes it started (and their children) by PID, then removes the namespace and /etc/netns dir', async () => {
    let pids: number[] = [];
    let name = '';
    let etcDir = '';
    await withNetns(async (n) => {
      name = n.name;
      etcDir = n.etcDir;
      const child = n.spawn('sh', ['-c', 'sleep 300 & sleep 300 & wait']);
      // Wait until both sleeps are inside (no sleeping on our side).
      for (let i = 0; i < 200 && (await n.pids()).length < 4; i++) await new Promise((r) => setImmediate(r));
      pids = await n.pids();
      expect(pids).toContain(child.pid);
      expect(pids.length).toBeGreaterThanOrEqual(4); // timeout, sh, 2 x sleep
    });
    expect(pids.filter(alive)).toEqual([]);
    expect(await namespaceExists(name)).toBe(false);
    expect(existsSync(etcDir)).toBe(false);
  });

  it('tears down when the body throws', async () => {
    let name = '';
    await expect(
      withNetns(async (n) => {
        name = n.name;
        n.spawn('sleep', ['300']);
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom');
    expect(await namespaceExists(name)).toBe(false);
  });

  it('binding a port twice is an error, not a hang', async () => {
    await expect(ns!.listenTcp(53)).rejects.toThrow(/cannot bind/);
  });

  it('stop() on Chromium leaves no process in the namespace', async () => {
    chromiumBinary();
    // A listener that accepts and never answers: Chromium waits on it.
    const hang = (await ns!.listenTcp(443)) as Server;
    const connected = new Promise<void>((res) => hang.once('connection', () => res()));
    const before = new Set(await ns!.pids());
    const c = await launchChromium({ netns: ns!, url: 'https://private.test/', timeoutMs: 30_000, ignoreCertificateErrors: true });
    await connected;
    expect((await ns!.pids()).length).toBeGreaterThan(before.size + 1); // browser + helpers
    const r = await c.stop();
    expect(r.killed).toBe(true);
    expect((await ns!.pids()).filter((p) => !before.has(p))).toEqual([]);
    hang.close();
  });
});
