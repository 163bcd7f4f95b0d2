// The relays' reads into reused memory (src/front/relay-reads.ts), and what
// they are for: `ech-server serve` relaying through a passthrough route
// (plain and ECH split mode) without the garbage collections Node's
// fresh-buffer-per-read caused. Counted from the serve process's own
// --trace-gc lines: V8 runs a young GC for "external memory pressure" once
// 32 MiB of read buffers are pending, and serve (old generation past 8 MiB)
// ran a mark-compact per such burst. 128 MiB relayed each way of naming the
// route: none of either now (before relay-reads.ts, seen in four runs: 2 to
// 4 such scavenges per 128 MiB each way, and 0 to 6 mark-compacts: how many
// depends on where V8 had put the old generation's limit). Also byte-exact
// relaying with many connections sharing the read buffer at once.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net, { type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { buildClientHello, buildEchClientHello } from '../src/ech/builder.js';
import { decodeEchConfigList, type EchConfig } from '../src/ech/config.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { encodeClientHelloMessage } from '../src/tls/client-hello.js';
import { ContentType, HandshakeType, NamedGroup } from '../src/tls/constants.js';
import { writeRecords } from '../src/tls/record.js';
import { EchFrontEnd } from '../src/front/front-end.js';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { readChunks } from '../src/front/relay-reads.js';
import { makePki, type TestPki } from './tls13-helpers.js';

const BIN = fileURLToPath(new URL('../dist/cli/main.js', import.meta.url));
const MiB = 1024 * 1024;

/** A ServerHello-shaped record (not a HelloRetryRequest): the front end relays what follows as after a handshake. */
const SERVER_HELLO = (() => {
  const body = Buffer.concat([Buffer.from([3, 3]), randomBytes(32), Buffer.from([0, 0x13, 0x01, 0, 0, 0])]);
  const hs = Buffer.concat([Buffer.from([HandshakeType.server_hello, 0, 0, body.length]), body]);
  return Buffer.concat([Buffer.from([ContentType.handshake, 3, 3, 0, hs.length]), hs]);
})();

const spec = (serverName: string) => ({
  serverName,
  alpn: ['http/1.1'],
  keyShares: [{ group: NamedGroup.x25519, keyExchange: new Uint8Array(randomBytes(32)) }],
  supportedGroups: [NamedGroup.x25519],
  supportedVersions: [0x0304],
});
const plainHello = (name: string) => Buffer.from(writeRecords(ContentType.handshake, encodeClientHelloMessage(buildClientHello(spec(name))), 0x0301));
const echHello = async (name: string, config: EchConfig) =>
  Buffer.from(writeRecords(ContentType.handshake, (await buildEchClientHello(spec(name), { config, sealer: createEchSealer })).outerMessage, 0x0301));

function listen(server: net.Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port)));
}
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);

/**
 * A backend: answers the first record (the forwarded ClientHello) with
 * SERVER_HELLO, then hashes what follows and echoes it back when `echo`.
 */
function backendServer(echo: boolean): { server: net.Server; streams: Array<Promise<{ bytes: number; sha256: string }>> } {
  const streams: Array<Promise<{ bytes: number; sha256: string }>> = [];
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    streams.push(
      new Promise((res) => {
        let head = Buffer.alloc(0);
        let seen = false;
        let bytes = 0;
        const h = createHash('sha256');
        const rest = (d: Buffer) => {
          bytes += d.length;
          h.update(d);
          if (echo && !s.write(d)) s.pause();
        };
        s.on('drain', () => s.resume());
        s.on('data', (d: Buffer) => {
          if (seen) return rest(d);
          head = Buffer.concat([head, d]);
          if (head.length < 5 || head.length < 5 + head.readUInt16BE(3)) return;
          seen = true;
          const len = 5 + head.readUInt16BE(3);
          s.write(SERVER_HELLO);
          if (head.length > len) rest(head.subarray(len));
        });
        s.on('end', () => {
          s.end();
          res({ bytes, sha256: h.digest('hex') });
        });
      }),
    );
  });
  return { server, streams };
}

/** Connect, send `hello`, wait for the ServerHello-shaped answer; the socket then carries the relayed stream. */
async function open(port: number, hello: Buffer): Promise<Socket> {
  const c = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  c.on('error', () => undefined);
  await new Promise<void>((r) => c.once('connect', () => r()));
  c.write(hello);
  let got = 0;
  await new Promise<void>((r) => {
    const on = (d: Buffer) => {
      got += d.length;
      if (got >= SERVER_HELLO.length) {
        c.off('data', on);
        c.pause();
        r();
      }
    };
    c.on('data', on);
  });
  return c;
}

/** Write `total` bytes of `chunk` to `c` with backpressure. */
async function pour(c: Socket, chunk: Buffer, total: number): Promise<void> {
  for (let sent = 0; sent < total; sent += chunk.length) {
    if (!c.write(chunk)) await new Promise((r) => c.once('drain', r));
  }
}

describe('readChunks', () => {
  it('switches a socket of this Node to reads into reused memory (where it cannot, the relays fall back to fresh buffers per read)', async () => {
    const server = net.createServer((s) => s.end(randomBytes(4 * MiB)));
    const port = await listen(server);
    const c = net.connect(port, '127.0.0.1');
    await new Promise<void>((r) => c.once('connect', () => r()));
    const seen = new Set<ArrayBufferLike>();
    let bytes = 0;
    const reused = readChunks(c, (chunk) => {
      bytes += chunk.length;
      seen.add(chunk.buffer);
      return false;
    });
    await new Promise<void>((r) => c.once('end', () => r()));
    c.destroy();
    server.close();
    expect(reused).toBe(true);
    expect(bytes).toBe(4 * MiB);
    // The shared buffer's copies and one buffer of its own, not one per read.
    expect(seen.size).toBeLessThanOrEqual(4);
  });
});

describe('passthrough relays, many connections at once', () => {
  let fe: EchFrontEnd;
  let backend: ReturnType<typeof backendServer>;
  let port: number;
  const key = generateEchKey({ publicName: 'cover.example', configId: 3 });
  let pki: TestPki;
  beforeAll(async () => {
    pki = makePki();
    const cover = pki.leaf('ec', ['cover.example']);
    backend = backendServer(true);
    const backendPort = await listen(backend.server);
    fe = new EchFrontEnd({
      keys: new EchKeySet([key]),
      publicName: { cert: cover.cert, key: cover.key },
      routes: [{ serverName: 'beta.example', action: { passthrough: { host: '127.0.0.1', port: backendPort } } }],
    });
    port = (await fe.listen(0)).port;
  });
  afterAll(async () => {
    await fe?.close();
    backend?.server.close();
    pki?.cleanup();
  });

  it('48 connections (plain and ECH split mode), bursts of 1 B to 1 MiB, some clients slow to read the echo: every byte arrives, in order, both ways', async () => {
    const run = async (i: number) => {
      const c = await open(port, i % 2 ? plainHello('beta.example') : await echHello('beta.example', key.config));
      const sent = createHash('sha256');
      const echoed = createHash('sha256');
      let sentBytes = 0;
      let echoedBytes = 0;
      const slow = i % 3 === 0;
      c.on('data', (d: Buffer) => {
        echoed.update(d);
        echoedBytes += d.length;
        if (slow) {
          c.pause();
          setTimeout(() => c.resume(), 2).unref();
        }
      });
      c.resume();
      const ended = new Promise<void>((r) => c.once('end', () => r()));
      for (const size of [1, 100, 5000, 16 * 1024, 16 * 1024 + 1, 70_000, MiB, 3, 64 * 1024, 200_000]) {
        const b = randomBytes(size);
        sent.update(b);
        sentBytes += size;
        if (!c.write(b)) await new Promise((r) => c.once('drain', r));
        if (size < 1000) await new Promise((r) => setTimeout(r, 1));
      }
      c.end();
      await within(ended, 30_000, `connection ${i}: echo end`);
      c.destroy();
      return { sentBytes, echoedBytes, sent: sent.digest('hex'), echoed: echoed.digest('hex') };
    };
    const results = await Promise.all(Array.from({ length: 48 }, (_, i) => run(i)));
    const atBackend = await Promise.all(backend.streams);
    for (const r of results) {
      expect(r.echoedBytes).toBe(r.sentBytes);
      expect(r.echoed).toBe(r.sent);
    }
    expect(atBackend.map((s) => s.sha256).sort()).toEqual(results.map((r) => r.sent).sort());
  }, 120_000);
});

describe('ech-server serve relaying 128 MiB through a passthrough route: no GC for read buffers', () => {
  let dir: string;
  let pki: TestPki;
  let config: EchConfig;
  let sink: net.Server;
  let sinkPort: number;
  /** Per connection after its first record: resolves once `want` bytes arrived. */
  let waiting: { want: number; got: number; done: () => void } | undefined;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ech-relay-gc-'));
    pki = makePki();
    const cover = pki.leaf('ec', ['cover.example']);
    const keygen = await promisify(execFile)(process.execPath, [BIN, 'keygen', '--public-name', 'cover.example', '--out', join(dir, 'keys')]);
    config = decodeEchConfigList(Buffer.from(JSON.parse(keygen.stdout).echConfigList, 'base64')).configs[0]!;
    sink = net.createServer((s) => {
      s.on('error', () => undefined);
      let head = Buffer.alloc(0);
      let seen = false;
      s.on('data', (d: Buffer) => {
        if (!seen) {
          head = Buffer.concat([head, d]);
          if (head.length < 5 || head.length < 5 + head.readUInt16BE(3)) return;
          seen = true;
          s.write(SERVER_HELLO);
          d = head.subarray(5 + head.readUInt16BE(3));
        }
        if (waiting && d.length) {
          waiting.got += d.length;
          if (waiting.got >= waiting.want) waiting.done();
        }
      });
    });
    sinkPort = await listen(sink);
    await writeFile(
      join(dir, 'serve.json'),
      JSON.stringify({
        listen: '127.0.0.1:0',
        keys: join(dir, 'keys'),
        publicName: { cert: cover.certPath, key: cover.keyPath },
        routes: [{ serverName: 'beta.example', passthrough: `127.0.0.1:${sinkPort}` }],
      }),
    );
  }, 60_000);
  afterAll(async () => {
    sink?.close();
    pki?.cleanup();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('plain (passthroughRaw) and ECH (split mode): no scavenge for external memory pressure, no mark-compact while relaying', async () => {
    const child: ChildProcess = spawn(process.execPath, ['--trace-gc', BIN, 'serve', '--config', join(dir, 'serve.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    try {
      const firstMarkCompact = () => /^.*Mark-Compact .*$/m.exec(out)?.[0];
      const port = await within(
        new Promise<number>((res, rej) => {
          const look = () => {
            const m = /"listening":"[^"]*:(\d+)"/.exec(out);
            if (m) res(Number(m[1]));
          };
          child.stdout!.on('data', look);
          child.once('exit', (c) => rej(new Error(`serve exited with ${c}: ${out}`)));
        }),
        15_000,
        'serve listening',
      );
      const chunk = randomBytes(256 * 1024);
      // Both connections first, with one MiB each (their setup, JIT).
      const conns: Array<[string, Socket]> = [];
      for (const [name, hello] of [
        ['plain', plainHello('beta.example')],
        ['ech', await echHello('beta.example', config)],
      ] as const) {
        const c = await open(port, hello);
        conns.push([name, c]);
        await within(
          new Promise<void>((done) => {
            waiting = { want: MiB, got: 0, done };
            void pour(c, chunk.subarray(0, 64 * 1024), MiB);
          }),
          20_000,
          `${name}: warm-up`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
      const counts: Record<string, { markCompacts: number; externalScavenges: number; lines: string[] }> = {};
      for (const [name, c] of conns) {
        const total = 128 * MiB;
        const from = out.length;
        await within(
          new Promise<void>((done) => {
            waiting = { want: total, got: 0, done };
            void pour(c, chunk, total);
          }),
          60_000,
          `${name}: 128 MiB at the backend`,
        );
        await new Promise((r) => setTimeout(r, 100));
        const lines = out.slice(from).split('\n').filter((l) => /Scavenge|Mark-Compact/.test(l));
        counts[name] = {
          // Not the process's first mark-compact (V8's initial heap limit,
          // reached after start-up, whenever the heap grows past it: 0.5 to
          // 12 s in), nor the memory reducer's "(reduce)" ones (V8 shrinking
          // an idle heap on a timer, about 8 s after the last mark-compact).
          markCompacts: lines.filter((l) => /Mark-Compact (?!\(reduce\))/.test(l) && l !== firstMarkCompact()).length,
          externalScavenges: lines.filter((l) => /Scavenge.*external memory pressure/.test(l)).length,
          lines,
        };
      }
      for (const [, c] of conns) c.destroy();
      const seen = Object.fromEntries(Object.entries(counts).map(([name, c]) => [name, { markCompacts: c.markCompacts, externalScavenges: c.externalScavenges }]));
      const none = { markCompacts: 0, externalScavenges: 0 };
      expect(seen, Object.values(counts).flatMap((c) => c.lines).join('\n')).toEqual({ plain: none, ech: none });
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => (child.exitCode !== null ? r(undefined) : child.once('exit', r)));
    }
  }, 120_000);
});
