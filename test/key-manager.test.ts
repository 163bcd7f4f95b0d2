// The key manager on an injected fake clock (no sleeping): the timeline
// create → accept → publish → retry → withdraw (retire) → delete, config_id
// uniqueness over many rotations, restart from the state file, and that a
// failing publisher changes nothing.
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type EchPublisher, EchKeyManager, type EchKeyManagerOptions } from '../src/keys/manager.js';
import type { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { writeEchKeyFile } from '../src/keys/files.js';
import { type EchConfig, decodeEchConfigList } from '../src/ech/config.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { PublishError } from '../src/dns/errors.js';
import { x25519Share } from './helpers/reference-keys.js';
import { FakeClock } from './helpers/fake-clock.js';

/** A publisher that records what it was asked and fails on demand. */
class RecordingPublisher implements EchPublisher {
  readonly description = 'recording';
  calls: { names: readonly string[]; configIds: number[] }[] = [];
  failWith: Error | undefined;
  async publish(names: readonly string[], list: Uint8Array): Promise<void> {
    if (this.failWith) throw this.failWith;
    this.calls.push({ names, configIds: decodeEchConfigList(list).configs.map((c) => c.configId) });
  }
  get current(): number[] | undefined {
    return this.calls.at(-1)?.configIds;
  }
}

async function helloFor(config: EchConfig): Promise<Uint8Array> {
  return (await buildEchClientHello({ serverName: 'secret.example', keyShares: [x25519Share()] }, { config, sealer: createEchSealer })).outerMessage;
}

async function decrypts(set: EchKeySet, hello: Uint8Array): Promise<boolean> {
  const r = await decryptClientHello(hello, set);
  return r.status === 'accepted' && r.innerServerName === 'secret.example';
}

const T0 = Date.UTC(2026, 0, 1, 0, 0, 0);
const S = 1000;

let dir: string;
let keyDir: string;
let stateFile: string;
let clock: FakeClock;
let publisher: RecordingPublisher;
const managers: EchKeyManager[] = [];

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ech-manager-'));
  keyDir = join(dir, 'keys');
  stateFile = join(dir, 'state.json');
  clock = new FakeClock(T0);
  publisher = new RecordingPublisher();
});

afterEach(async () => {
  for (const m of managers.splice(0)) await m.stop();
  await rm(dir, { recursive: true, force: true });
});

async function open(extra: Partial<EchKeyManagerOptions> = {}): Promise<EchKeyManager> {
  const m = await EchKeyManager.open({
    keyDirectory: keyDir,
    stateFile,
    publicName: 'cover.example',
    names: ['secret.example'],
    period: 3600,
    ttl: 300,
    margin: 600,
    publishDelay: 60,
    retryInterval: 30,
    publisher,
    clock,
    ...extra,
  });
  managers.push(m);
  return m;
}

const files = async () => (await readdir(keyDir)).filter((n) => n.endsWith('.pem')).sort();

describe('key manager timeline on a fake clock', () => {
  it('create → accept at once → publish → retry → withdraw and retire → delete after ttl + margin', async () => {
    const m = await open();
    const events: EchKeySet[] = [];
    m.on('keys', (s) => events.push(s));

    // t0: K1 is created and decrypts at once, but is neither published nor a retry config.
    const r0 = await m.start();
    expect(r0.created).toHaveLength(1);
    expect(r0.published).toBeNull();
    const k1 = m.keySet.keys()[0]!.config;
    expect(m.status()).toMatchObject([{ configId: k1.configId, phase: 'pending', retry: false }]);
    expect(m.keySet.retryConfigList()).toBeUndefined();
    expect(publisher.calls).toEqual([]);
    const hello1 = await helloFor(k1);
    expect(await decrypts(m.keySet, hello1)).toBe(true);
    expect(await files()).toEqual([expect.stringMatching(/^ech-cover\.example-.*\.pem$/)]);
    expect((await stat(join(keyDir, (await files())[0]!))).mode & 0o777).toBe(0o600);

    // t0 + publishDelay: published, then the retry config.
    await clock.advance(59 * S, m);
    expect(publisher.calls).toEqual([]);
    await clock.advance(1 * S, m);
    expect(publisher.calls).toEqual([{ names: ['secret.example'], configIds: [k1.configId] }]);
    expect(m.status()[0]).toMatchObject({ phase: 'active', retry: true, published: new Date(T0 + 60 * S).toISOString() });
    expect(decodeEchConfigList(m.keySet.retryConfigList()!).configs.map((c) => c.configId)).toEqual([k1.configId]);

    // t0 + period: K2 is created and accepted; K1 is still the one in DNS and retry_configs.
    await clock.advance(3600 * S - 60 * S, m);
    const k2 = m.status().find((k) => k.phase === 'pending')!;
    expect(k2).toBeDefined();
    expect(k2.configId).not.toBe(k1.configId);
    const k2config = m.keySet.get(k2.configId)!.config;
    const hello2 = await helloFor(k2config);
    expect(await decrypts(m.keySet, hello2)).toBe(true);
    expect(publisher.current).toEqual([k1.configId]);
    expect(decodeEchConfigList(m.keySet.retryConfigList()!).configs.map((c) => c.configId)).toEqual([k1.configId]);

    // + publishDelay: K2 published and retry; K1 withdrawn from DNS and retry_configs, renamed *.retired.pem, still decrypts.
    await clock.advance(60 * S, m);
    expect(publisher.current).toEqual([k2.configId]);
    expect(m.status().map((k) => [k.configId, k.phase, k.retry])).toEqual([
      [k2.configId, 'active', true],
      [k1.configId, 'withdrawn', false],
    ]);
    expect(decodeEchConfigList(m.keySet.retryConfigList()!).configs.map((c) => c.configId)).toEqual([k2.configId]);
    expect((await files()).filter((n) => n.endsWith('.retired.pem'))).toHaveLength(1);
    expect(await decrypts(m.keySet, hello1)).toBe(true);
    const withdrawnAt = clock.t;
    expect(m.status()[1]!.deleteAfter).toBe(new Date(withdrawnAt + 900 * S).toISOString());

    // A connection that took the snapshot before the deletion keeps it.
    const midHandshake = m.keySet;

    // ttl + margin (900 s) after withdrawal: deleted from the set and the disk.
    await clock.advance(899 * S, m);
    // An explicit step one second early (as cron might run it) deletes nothing.
    expect((await m.step()).deleted).toEqual([]);
    expect(await decrypts(m.keySet, hello1)).toBe(true);
    await clock.advance(1 * S, m);
    expect(m.status().map((k) => k.configId)).toEqual([k2.configId]);
    expect(await files()).toHaveLength(1);
    expect((await files())[0]).not.toMatch(/retired/);
    const after = await decryptClientHello(hello1, m.keySet);
    expect(after.status).toBe('rejected');
    expect(after.status === 'rejected' && after.reason).toBe('no-matching-config');
    expect(await decrypts(m.keySet, hello2)).toBe(true);
    expect(await decrypts(midHandshake, hello1)).toBe(true);

    // Every change came as a new snapshot; none was mutated afterwards.
    expect(events.length).toBeGreaterThanOrEqual(5);
    expect(new Set(events).size).toBe(events.length);
    expect(events[0]!.retryConfigList()).toBeUndefined();
  });

  it('config_ids never collide among live keys over 400 rotations, and are reused only after deletion', async () => {
    // 10-second period, 900-second grace: about 92 keys live at once.
    const m = await open({ period: 10, publishDelay: 0, ttl: 300, margin: 600 });
    let maxLive = 0;
    let checked = 0;
    const created = new Set<string>();
    m.on('keys', (set) => {
      const ids = set.keys().map((k) => k.config.configId);
      expect(new Set(ids).size).toBe(ids.length);
      maxLive = Math.max(maxLive, ids.length);
      checked++;
    });
    m.on('step', (r) => r.created.forEach((id) => created.add(`${r.time}/${id}`)));
    await m.start();
    for (let i = 0; i < 400; i++) await clock.advance(10 * S, m);
    expect(created.size).toBe(401);
    expect(checked).toBeGreaterThan(400);
    expect(maxLive).toBeGreaterThan(85);
    expect(maxLive).toBeLessThanOrEqual(93);
    // More keys were made than there are config_ids: deleted ones were reused.
    const ids = m.status().map((k) => k.configId);
    expect(new Set(ids).size).toBe(ids.length);
    expect((await files()).length).toBe(ids.length);
  }, 120_000);

  it('a failing publisher promotes, withdraws and deletes nothing; the step is retried and succeeds later', async () => {
    const m = await open({ publishDelay: 0 });
    await m.start();
    const k1 = m.status()[0]!;
    expect(k1.phase).toBe('active');
    await clock.advance(3600 * S, m); // K2 active, K1 withdrawn
    const k2 = m.status()[0]!;
    expect(m.status().map((k) => k.phase)).toEqual(['active', 'withdrawn']);

    publisher.failWith = new PublishError('ERR_DNS_TSIG', 'TSIG error BADSIG from the server', { tsigError: 'BADSIG' });
    const errors: Error[] = [];
    m.on('publishError', (e) => errors.push(e));
    // K1 is deleted 900 s after its withdrawal; K3 is due one period after K2, and its publish fails.
    await clock.advance(3600 * S, m);
    expect(errors.length).toBeGreaterThanOrEqual(1);
    expect(errors[0]).toMatchObject({ code: 'ERR_DNS_TSIG' });
    const during = m.status();
    expect(during.map((k) => [k.configId === k2.configId, k.phase])).toEqual([
      [true, 'active'],
      [false, 'pending'],
    ]);
    expect(publisher.current).toEqual([k2.configId]);
    expect(decodeEchConfigList(m.keySet.retryConfigList()!).configs.map((c) => c.configId)).toEqual([k2.configId]);
    // The keys serving before the failure still serve, and the new one decrypts.
    expect(await decrypts(m.keySet, await helloFor(m.keySet.get(k2.configId)!.config))).toBe(true);
    const k3 = during[1]!;
    expect(await decrypts(m.keySet, await helloFor(m.keySet.get(k3.configId)!.config))).toBe(true);

    // Retried every retryInterval (30 s) while failing; no new keys pile up.
    const failuresBefore = errors.length;
    await clock.advance(95 * S, m);
    expect(errors.length).toBe(failuresBefore + 3);
    expect(m.status()).toHaveLength(2);

    // The DNS server comes back: K3 goes live, K2 is withdrawn.
    publisher.failWith = undefined;
    await clock.advance(30 * S, m);
    expect(publisher.current).toEqual([k3.configId]);
    expect(m.status().map((k) => [k.configId, k.phase])).toEqual([
      [k3.configId, 'active'],
      [k2.configId, 'withdrawn'],
    ]);
  });

  it('a failing publish does not delete a withdrawn key even when its grace period is over', async () => {
    const m = await open({ publishDelay: 0, period: 3600, ttl: 300, margin: 600 });
    await m.start();
    await clock.advance(3600 * S, m); // K2 active, K1 withdrawn at 3600 s
    const [k2, k1] = m.status();
    await m.stop();
    // The process was down past K1's deletion time and past K3's creation time;
    // on restart the DNS server refuses.
    clock.t += 3600 * S;
    publisher.failWith = new PublishError('ERR_DNS_REFUSED', 'REFUSED');
    const m2 = await open({ publishDelay: 0, period: 3600, ttl: 300, margin: 600 });
    const r = await m2.step();
    expect(r.error).toMatchObject({ code: 'ERR_DNS_REFUSED' });
    expect(r.deleted).toEqual([]);
    expect(r.withdrawn).toEqual([]);
    expect(m2.status().map((k) => [k.configId, k.phase])).toEqual([
      [k2!.configId, 'active'],
      [r.created[0], 'pending'],
      [k1!.configId, 'withdrawn'],
    ]);
    publisher.failWith = undefined;
    const ok = await m2.step();
    expect(ok.error).toBeNull();
    expect(ok.deleted).toEqual([k1!.configId]);
    expect(ok.withdrawn).toEqual([k2!.configId]);
  });
});

describe('key manager state', () => {
  it('restarts from the key directory and state file and keeps the schedule', async () => {
    const m = await open({ publishDelay: 0 });
    await m.start();
    await clock.advance(3600 * S, m); // K2 active, K1 withdrawn
    const before = m.status();
    await m.stop();

    const st = await stat(stateFile);
    expect(st.mode & 0o777).toBe(0o600);
    expect((await readdir(dir)).filter((n) => n.includes('.tmp') || n.endsWith('.lock'))).toEqual([]);
    const state = JSON.parse(await readFile(stateFile, 'utf8')) as { keys: unknown[] };
    expect(state.keys).toHaveLength(2);

    // A new process, 10 minutes later.
    clock.t += 600 * S;
    const publishedBefore = publisher.calls.length;
    const m2 = await open({ publishDelay: 0 });
    expect(m2.status()).toEqual(before);
    const hello = await helloFor(m2.keySet.get(before[1]!.configId)!.config);
    expect(await decrypts(m2.keySet, hello)).toBe(true);
    const r = await m2.start();
    // Nothing was due: no new key, no publish (DNS already carries K2).
    expect(r.created).toEqual([]);
    expect(r.published).toBeNull();
    expect(publisher.calls.length).toBe(publishedBefore);
    // K1 is deleted 900 s after its withdrawal, i.e. 300 s from now.
    await clock.advance(299 * S, m2);
    expect(m2.status()).toHaveLength(2);
    await clock.advance(1 * S, m2);
    expect(m2.status().map((k) => k.configId)).toEqual([before[0]!.configId]);
    expect(await decrypts(m2.keySet, hello)).toBe(false);
    // And K3 comes exactly one period after K2.
    await clock.advance(3600 * S - 900 * S - 1 * S, m2);
    expect(m2.status()).toHaveLength(1);
    await clock.advance(1 * S, m2);
    expect(m2.status()).toHaveLength(2);
  });

  it('a crash between renaming a retired file and writing the state is repaired on restart', async () => {
    const m = await open({ publishDelay: 0 });
    await m.start();
    await clock.advance(3600 * S, m);
    await m.stop();
    // Undo the rename: the file says "live", the state says "withdrawn".
    const retired = (await files()).find((n) => n.endsWith('.retired.pem'))!;
    await rename(join(keyDir, retired), join(keyDir, retired.replace('.retired.pem', '.pem')));
    const m2 = await open({ publishDelay: 0 });
    expect(m2.status().map((k) => k.phase)).toEqual(['active', 'withdrawn']);
    expect((await files()).filter((n) => n.endsWith('.retired.pem'))).toEqual([retired]);
  });

  it('a key present as both X.pem and X.retired.pem counts once, as withdrawn', async () => {
    const m = await open({ publishDelay: 0 });
    await m.step();
    const [f] = await files();
    const { copyFile } = await import('node:fs/promises');
    await copyFile(join(keyDir, f!), join(keyDir, f!.replace('.pem', '.retired.pem')));
    const m2 = await open({ publishDelay: 0 });
    expect(m2.status().map((k) => k.phase)).toEqual(['withdrawn']);
    expect(m2.keySet.size).toBe(1);
    expect(await files()).toEqual([f!.replace('.pem', '.retired.pem')]);
  });

  it('adopts key files it did not make (keygen): live ones as serving, retired ones as withdrawn now', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(keyDir, { recursive: true });
    const live = generateEchKey({ publicName: 'cover.example', configId: 7 });
    const old = generateEchKey({ publicName: 'cover.example', configId: 8 });
    await writeEchKeyFile(join(keyDir, 'ech-cover.example-07.pem'), live.config, live.privateKeyRaw);
    await writeEchKeyFile(join(keyDir, 'ech-cover.example-08.retired.pem'), old.config, old.privateKeyRaw);
    const m = await open({ period: 365 * 86400 });
    expect(m.status().map((k) => [k.configId, k.phase, k.retry])).toEqual([
      [7, 'active', true],
      [8, 'withdrawn', false],
    ]);
    // The first step publishes the adopted key (DNS state unknown) and makes no new one.
    const r = await m.step();
    expect(r.created).toEqual([]);
    expect(publisher.current).toEqual([7]);
    expect(r.keys.find((k) => k.configId === 8)!.deleteAfter).toBe(new Date(T0 + 900 * S).toISOString());
  });

  it('each step starts from disk: a manager sees what another one did and makes no colliding key', async () => {
    const a = await open({ publishDelay: 0 });
    const b = await open({ publishDelay: 0 });
    const seen: EchKeySet[] = [];
    b.on('keys', (s) => seen.push(s));
    const ra = await a.step();
    expect(b.keySet.size).toBe(0);
    const rb = await b.step();
    expect(rb.created).toEqual([]);
    expect(rb.published).toBeNull();
    expect(seen).toHaveLength(1);
    expect(b.keySet.keys().map((k) => k.config.configId)).toEqual(ra.created);
    clock.t += 3600 * S;
    const rb2 = await b.step();
    expect(rb2.created).toHaveLength(1);
    expect(rb2.created[0]).not.toBe(ra.created[0]);
    expect(rb2.withdrawn).toEqual(ra.created);
  });

  it('refuses to step while another process holds the lock; a scheduled step retries after retryInterval', async () => {
    const m = await open();
    await writeFile(`${stateFile}.lock`, '12345\n');
    await expect(m.step()).rejects.toThrow(/another rotation is running/);
    const stepErrors: Error[] = [];
    m.on('stepError', (e) => stepErrors.push(e));
    await expect(m.start()).rejects.toThrow(/another rotation is running/);
    expect(clock.pending).toBe(1);
    await clock.advance(29 * S, m);
    expect(stepErrors).toHaveLength(0);
    await clock.advance(1 * S, m);
    expect(stepErrors).toHaveLength(1);
    await rm(`${stateFile}.lock`);
    await clock.advance(30 * S, m);
    expect(stepErrors).toHaveLength(1);
    expect(m.status()).toHaveLength(1);
  });

  it('rejects a corrupt state file with a clear error', async () => {
    const { mkdir } = await import('node:fs/promises');
    await mkdir(dir, { recursive: true });
    await writeFile(stateFile, '{"version": 2}');
    await expect(open()).rejects.toMatchObject({ code: 'ERR_KEY_FILE', message: expect.stringMatching(/state file .* is not valid/) });
  });
});
