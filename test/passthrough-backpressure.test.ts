// Split-mode relay (src/front/passthrough.ts) after the handshake: flow
// control both ways. A backend that stops reading while the client sends
// 64 MiB, or a client that stops reading while the backend sends 64 MiB,
// must not make the front end buffer the stream: the relay pauses the
// sending side when the other side's write() returns false and resumes it on
// 'drain', as `stream.pipe` does. Once the slow side reads again, every byte
// arrives in order (SHA-256 of the whole stream), the half-close is relayed
// after the last byte and the answer still comes back, and every socket of
// the front end is closed at the end. Resets in either direction while the
// relay is held by backpressure close the other side too.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import net, { type AddressInfo, type Socket } from 'node:net';
import { createHash, randomBytes } from 'node:crypto';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello } from '../src/ech/decrypt.js';
import { ContentType, HandshakeType, NamedGroup } from '../src/tls/constants.js';
import { writeRecords } from '../src/tls/record.js';
import { readFirstFlight } from '../src/front/first-flight.js';
import { type PassthroughResult, passthrough } from '../src/front/passthrough.js';
import { encodeEchConfigList } from '../src/ech/config.js';
import { connectEch } from '../src/tls13/ech-client.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import { makePki, startServer, type TestPki } from './tls13-helpers.js';

const MiB = 1024 * 1024;
const STREAM_MIB = 64;
/** Most the front end may hold for one connection (both sockets' user-space buffers). */
const BOUND = 4 * MiB;

const key = generateEchKey({ publicName: 'cover.example', configId: 5 });
const keys = new EchKeySet([key]);

/** A ServerHello-shaped record (not a HelloRetryRequest): the relay treats what follows as after the handshake. */
const SERVER_HELLO = (() => {
  const body = Buffer.concat([Buffer.from([3, 3]), randomBytes(32), Buffer.from([0, 0x13, 0x01, 0, 0, 0])]);
  const hs = Buffer.concat([Buffer.from([HandshakeType.server_hello, 0, 0, body.length]), body]);
  return Buffer.concat([Buffer.from([ContentType.handshake, 3, 3, 0, hs.length]), hs]);
})();

async function echHelloRecord(): Promise<Buffer> {
  const hello = await buildEchClientHello(
    { serverName: 'secret.example', alpn: ['http/1.1'], keyShares: [{ group: NamedGroup.x25519, keyExchange: new Uint8Array(randomBytes(32)) }], supportedGroups: [NamedGroup.x25519], supportedVersions: [0x0304] },
    { config: key.config, sealer: createEchSealer },
  );
  return Buffer.from(writeRecords(ContentType.handshake, hello.outerMessage, 0x0301));
}

function listen(server: net.Server): Promise<number> {
  return new Promise((res) => server.listen(0, '127.0.0.1', () => res((server.address() as AddressInfo).port)));
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const closed = (s: Socket) => (s.closed ? Promise.resolve() : new Promise<void>((r) => s.once('close', () => r())));
const within = <T>(p: Promise<T>, ms: number, what: string) =>
  Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms).unref())]);

/** Reads one TLS record's worth of bytes from `s` (the first flight), then hands the rest of the stream to `onRest`. */
function afterFirstRecord(s: Socket, onFirst: (record: Buffer) => void, onRest: (d: Buffer) => void): void {
  let head = Buffer.alloc(0);
  let seen = false;
  s.on('data', (d: Buffer) => {
    if (seen) return onRest(d);
    head = Buffer.concat([head, d]);
    if (head.length < 5 || head.length < 5 + head.readUInt16BE(3)) return;
    seen = true;
    const len = 5 + head.readUInt16BE(3);
    onFirst(head.subarray(0, len));
    if (head.length > len) onRest(head.subarray(len));
  });
}

interface Rig {
  /** The backend's socket (its end of the connection from the front end). */
  backend: Promise<Socket>;
  /** The front end's two sockets: towards the client, towards the backend. */
  front: Promise<{ client: Socket; up: Socket }>;
  result: Promise<PassthroughResult>;
  /** The client's socket, connected, hello sent. */
  client: Socket;
  /** Resolves with the backend's first record (the forwarded ClientHelloInner) once seen. */
  inner: Promise<Buffer>;
  /** With `holdServerHello`: the backend answers now; resolves when the client has the answer. */
  serverHello(): Promise<void>;
  /** Most bytes the front end held (read from one side, not yet passed to the kernel towards the other) at any sample so far. */
  maxBuffered(): number;
  backendData: (fn: (d: Buffer) => void) => void;
  clientData: (fn: (d: Buffer) => void) => void;
  close(): Promise<void>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.close();
});

/**
 * Client → front end (readFirstFlight, decryptClientHello, passthrough) →
 * backend. The backend answers the forwarded ClientHelloInner with a
 * ServerHello-shaped record; the client waits for it before `clientData`.
 */
async function rig(opts: { holdServerHello?: boolean } = {}): Promise<Rig> {
  let onBackendData: (d: Buffer) => void = () => undefined;
  let onClientData: (d: Buffer) => void = () => undefined;
  let gotInner: (b: Buffer) => void = () => undefined;
  const inner = new Promise<Buffer>((r) => (gotInner = r));
  let gotBackend: (s: Socket) => void = () => undefined;
  const backendSocket = new Promise<Socket>((r) => (gotBackend = r));
  const backendServer = net.createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => undefined);
    gotBackend(s);
    afterFirstRecord(
      s,
      (record) => {
        gotInner(record);
        if (!opts.holdServerHello) s.write(SERVER_HELLO);
      },
      (d) => onBackendData(d),
    );
  });
  const backendPort = await listen(backendServer);

  let gotFront: (f: { client: Socket; up: Socket }) => void = () => undefined;
  const front = new Promise<{ client: Socket; up: Socket }>((r) => (gotFront = r));
  let gotResult: (r: PassthroughResult) => void = () => undefined;
  const result = new Promise<PassthroughResult>((r) => (gotResult = r));
  const frontServer = net.createServer({ allowHalfOpen: true }, async (socket) => {
    socket.on('error', () => undefined);
    const first = await readFirstFlight(socket);
    const r = await decryptClientHello(first.message, keys);
    if (r.status !== 'accepted') throw new Error(`expected ECH accepted, got ${r.status}`);
    const up = net.connect({ host: '127.0.0.1', port: backendPort, allowHalfOpen: true });
    up.on('error', () => undefined);
    await new Promise<void>((res) => up.once('connect', () => res()));
    gotFront({ client: socket, up });
    gotResult(await passthrough(socket, r, { host: '127.0.0.1', port: backendPort, socket: up }, first.rest, first.recordVersion));
  });
  const frontPort = await listen(frontServer);

  // What the front end holds: bytes it has read from one side and not yet
  // handed to the kernel towards the other (its readable buffers, whatever
  // the relay keeps, its writable buffers), counted from the sockets' byte
  // counters. The ClientHello the front end reads becomes the
  // ClientHelloInner it writes: their sizes are taken off once both are known.
  let max = 0;
  let sockets: { client: Socket; up: Socket } | undefined;
  let helloBytes = 0;
  let innerBytes = 0;
  void front.then((f) => (sockets = f));
  void inner.then((b) => (innerBytes = b.length));
  const sample = () => {
    if (!sockets || !innerBytes) return 0;
    const { client, up } = sockets;
    const towardsBackend = client.bytesRead - helloBytes - (up.bytesWritten - up.writableLength - innerBytes);
    const towardsClient = up.bytesRead - (client.bytesWritten - client.writableLength);
    const n = towardsBackend + towardsClient;
    // (A destroyed socket no longer counts what it wrote.)
    if (Number.isFinite(n)) max = Math.max(max, n);
    return n;
  };
  const sampler = setInterval(sample, 2);

  const client = net.connect({ host: '127.0.0.1', port: frontPort, allowHalfOpen: true });
  client.on('error', () => undefined);
  await new Promise<void>((res) => client.once('connect', () => res()));
  const serverHello = new Promise<void>((res) => afterFirstRecord(client, () => res(), (d) => onClientData(d)));
  const hello = await echHelloRecord();
  helloBytes = hello.length;
  client.write(hello);
  if (!opts.holdServerHello) await within(serverHello, 10_000, 'the ServerHello-shaped answer');

  const r: Rig = {
    backend: backendSocket,
    front,
    result,
    client,
    inner,
    serverHello: async () => {
      (await backendSocket).write(SERVER_HELLO);
      await within(serverHello, 10_000, 'the ServerHello-shaped answer');
    },
    maxBuffered: () => (sample(), max),
    backendData: (fn) => (onBackendData = fn),
    clientData: (fn) => (onClientData = fn),
    close: async () => {
      clearInterval(sampler);
      client.destroy();
      (await backendSocket).destroy();
      await Promise.all([new Promise((res) => frontServer.close(res)), new Promise((res) => backendServer.close(res))]);
    },
  };
  rigs.push(r);
  return r;
}

/** Write `chunks[from..]` to `s`, honouring its backpressure; with `stallMs`, stop early when a write does not drain within it. Resolves with the index of the next chunk to write. */
async function send(s: Socket, chunks: Buffer[], from: number, stallMs?: number): Promise<number> {
  let i = from;
  for (; i < chunks.length; i++) {
    if (!s.write(chunks[i]!)) {
      const drained = new Promise<boolean>((res) => s.once('drain', () => res(true)));
      const ok = stallMs === undefined ? await drained : await Promise.race([drained, sleep(stallMs).then(() => false)]);
      if (!ok) return i + 1;
    }
  }
  return i;
}

function payload(): { chunks: Buffer[]; sha256: string } {
  const chunks = Array.from({ length: STREAM_MIB }, () => randomBytes(MiB));
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return { chunks, sha256: h.digest('hex') };
}

describe('passthrough relay: backpressure both ways', () => {
  it(`client → backend: a backend that does not read while the client sends ${STREAM_MIB} MiB; the front end holds ≤ 4 MiB, then every byte arrives and the answer comes back after the client's FIN`, async () => {
    const { chunks, sha256 } = payload();
    const r = await rig();
    const backend = await r.backend;
    // The backend stops reading right after the ClientHelloInner.
    await r.inner;
    backend.pause();
    const h = createHash('sha256');
    let got = 0;
    r.backendData((d) => {
      h.update(d);
      got += d.length;
    });
    // The client writes until its writes stop completing for 400 ms.
    const sent = await send(r.client, chunks, 0, 400);
    await sleep(200);
    const held = r.maxBuffered();
    expect(held, `front end buffered ${held} bytes with the backend not reading (client wrote ${sent} MiB)`).toBeLessThanOrEqual(BOUND);
    expect(sent).toBeLessThan(STREAM_MIB);

    // The backend reads again: the rest flows, the client's FIN follows the last byte.
    backend.on('end', () => backend.end(`sha256 ${h.digest('hex')} ${got}`));
    backend.resume();
    let answer = '';
    r.clientData((d) => (answer += d.toString('latin1')));
    await send(r.client, chunks, sent);
    r.client.end();
    await within(closed(r.client), 20_000, 'client close');
    expect(answer).toBe(`sha256 ${sha256} ${STREAM_MIB * MiB}`);
    const done = await within(r.result, 10_000, 'passthrough result');
    expect(done.error).toBeUndefined();
    expect(done.bytesFromBackend).toBe(SERVER_HELLO.length + answer.length);
    const f = await r.front;
    expect(f.client.destroyed && f.up.destroyed).toBe(true);
    expect(r.maxBuffered()).toBeLessThanOrEqual(BOUND);
  }, 60_000);

  it(`backend → client: a client that does not read while the backend sends ${STREAM_MIB} MiB; the front end holds ≤ 4 MiB, then every byte arrives and the FIN after it`, async () => {
    const { chunks, sha256 } = payload();
    const r = await rig();
    const backend = await r.backend;
    await r.inner;
    // The client stops reading once it has the ServerHello.
    r.client.pause();
    const h = createHash('sha256');
    let got = 0;
    r.clientData((d) => {
      h.update(d);
      got += d.length;
    });
    const sent = await send(backend, chunks, 0, 400);
    await sleep(200);
    const held = r.maxBuffered();
    expect(held, `front end buffered ${held} bytes with the client not reading (backend wrote ${sent} MiB)`).toBeLessThanOrEqual(BOUND);
    expect(sent).toBeLessThan(STREAM_MIB);

    r.client.resume();
    await send(backend, chunks, sent);
    backend.end();
    await within(new Promise((res) => r.client.once('end', res)), 20_000, 'client end');
    expect({ sha256: h.digest('hex'), got }).toEqual({ sha256, got: STREAM_MIB * MiB });
    // The client's FIN goes on to the backend; everything closes.
    r.client.end('bye');
    let last = '';
    backend.on('data', (d: Buffer) => (last += d.toString('latin1')));
    await within(closed(r.client), 10_000, 'client close');
    const done = await within(r.result, 10_000, 'passthrough result');
    expect(done.error).toBeUndefined();
    expect(done.bytesFromBackend).toBe(SERVER_HELLO.length + STREAM_MIB * MiB);
    await within(closed(backend), 10_000, 'backend close');
    expect(last).toBe('bye');
    expect(r.maxBuffered()).toBeLessThanOrEqual(BOUND);
  }, 60_000);
});

describe('passthrough relay: the handshake phase and the hot path', () => {
  it(`client bytes sent before the backend's first message (${STREAM_MIB} MiB): the front end holds ≤ 4 MiB of them, then forwards every byte in order`, async () => {
    const { chunks, sha256 } = payload();
    const r = await rig({ holdServerHello: true });
    const backend = await r.backend;
    await r.inner;
    const h = createHash('sha256');
    let got = 0;
    r.backendData((d) => {
      h.update(d);
      got += d.length;
    });
    // The backend reads, but has not answered: the relay does not know yet
    // whether a second ClientHello will follow, so it holds the client's bytes.
    const sent = await send(r.client, chunks, 0, 400);
    await sleep(200);
    const held = r.maxBuffered();
    expect(held, `front end buffered ${held} bytes before the backend's first message (client wrote ${sent} MiB)`).toBeLessThanOrEqual(BOUND);
    expect(sent).toBeLessThan(STREAM_MIB);
    expect(got).toBe(0);

    await r.serverHello();
    backend.on('end', () => backend.end(`sha256 ${h.digest('hex')} ${got}`));
    let answer = '';
    r.clientData((d) => (answer += d.toString('latin1')));
    await send(r.client, chunks, sent);
    r.client.end();
    await within(closed(r.client), 20_000, 'client close');
    expect(answer).toBe(`sha256 ${sha256} ${STREAM_MIB * MiB}`);
    expect((await within(r.result, 10_000, 'passthrough result')).error).toBeUndefined();
  }, 60_000);

  it("after the backend's first message the client's bytes go to the backend as read, one write per read, without a copy, from reused memory", async () => {
    // The relay reads into memory it reuses (src/front/relay-reads.ts), not
    // into a fresh ArrayBuffer per read as Node's 'data' events do: V8 counts
    // those towards the old generation until a young GC frees them, and a
    // front end whose heap is past 8 MiB ran a mark-compact per 32 MiB
    // relayed. Counted here: the distinct ArrayBuffers under the writes.
    const r = await rig();
    const f = await r.front;
    const written: Buffer[] = [];
    const write = f.up.write.bind(f.up) as (chunk: unknown) => boolean;
    (f.up as unknown as { write: (chunk: unknown) => boolean }).write = (chunk: unknown) => {
      written.push(chunk as Buffer);
      return write(chunk);
    };
    const backend = await r.backend;
    let got = 0;
    const all = new Promise<void>((res) =>
      r.backendData((d) => {
        got += d.length;
        if (got === 8 * MiB) res();
      }),
    );
    const readBefore = f.client.bytesRead;
    await send(r.client, Array.from({ length: 8 }, () => randomBytes(MiB)), 0);
    await within(all, 20_000, 'the stream at the backend');
    // Every byte read went out in one write of its own: nothing merged, split or held back.
    expect(written.reduce((n, w) => n + w.length, 0)).toBe(f.client.bytesRead - readBefore);
    expect(written.every((w) => Buffer.isBuffer(w) && w.length <= 64 * 1024)).toBe(true);
    const memory = new Set(written.map((w) => w.buffer));
    expect(written.length).toBeGreaterThanOrEqual(8 * MiB / (64 * 1024));
    expect(memory.size).toBeLessThanOrEqual(written.length / 8);
    backend.destroy();
  }, 30_000);
});

describe('passthrough relay: resets while held by backpressure', () => {
  it('the backend resets while the client is paused behind it: the client is closed, the result has the error, no socket is left', async () => {
    const { chunks } = payload();
    const r = await rig();
    const backend = await r.backend;
    await r.inner;
    backend.pause();
    await send(r.client, chunks.slice(0, 16), 0, 300);
    backend.resetAndDestroy();
    await within(closed(r.client), 10_000, 'client close');
    const done = await within(r.result, 10_000, 'passthrough result');
    expect((done.error as NodeJS.ErrnoException | undefined)?.code).toMatch(/ECONNRESET|EPIPE/);
    const f = await r.front;
    expect(f.client.destroyed && f.up.destroyed).toBe(true);
  }, 30_000);

  it('the client resets while the backend is paused behind it: the backend is closed, the result has the error, no socket is left', async () => {
    const { chunks } = payload();
    const r = await rig();
    const backend = await r.backend;
    await r.inner;
    r.client.pause();
    // A backend answers the front end's FIN with its own (allowHalfOpen).
    backend.on('end', () => backend.end());
    void send(backend, chunks.slice(0, 16), 0, 300);
    await sleep(500);
    r.client.resetAndDestroy();
    await within(closed(backend), 10_000, 'backend close');
    const done = await within(r.result, 10_000, 'passthrough result');
    expect((done.error as NodeJS.ErrnoException | undefined)?.code).toMatch(/ECONNRESET|EPIPE/);
    const f = await r.front;
    expect(f.client.destroyed && f.up.destroyed).toBe(true);
  }, 30_000);
});

describe('passthrough relay after a HelloRetryRequest (RFC 9849 §7.1.1)', () => {
  let pki: TestPki;
  beforeAll(() => {
    pki = makePki();
  }, 60_000);
  afterAll(() => pki?.cleanup());

  it('the second ClientHello is re-decrypted and forwarded, then 16 MiB each way go straight through, byte-exact, and the answer comes back after the FIN', async () => {
    const secret = pki.leaf('ec', ['secret.example']);
    const down = payload().chunks.slice(0, 16);
    const downSha = createHash('sha256');
    for (const c of down) downSha.update(c);
    // Our engine in backend mode, P-256 only: a client offering an X25519
    // share gets a HelloRetryRequest. It hashes what it reads, sends 16 MiB
    // back, and answers the client's FIN with the hash.
    const backend = await startServer(
      { key: secret.key, cert: secret.cert, onClientHello: createEchHook({ role: 'backend' }), ecdhCurve: 'P-256', allowHalfOpen: true },
      (s) => {
        const h = createHash('sha256');
        let got = 0;
        s.on('error', () => undefined);
        s.on('data', (d: Buffer) => {
          h.update(d);
          got += d.length;
        });
        // The answer follows the whole download, however early the client's FIN comes.
        const sent = send(s as unknown as Socket, down, 0);
        s.on('end', () => void sent.then(() => s.end(`\nsha256 ${h.digest('hex')} ${got}`)));
      },
    );
    let gotResult: (r: PassthroughResult) => void = () => undefined;
    const result = new Promise<PassthroughResult>((r) => (gotResult = r));
    const front = net.createServer({ allowHalfOpen: true }, async (socket) => {
      socket.on('error', () => undefined);
      const first = await readFirstFlight(socket);
      const r = await decryptClientHello(first.message, keys);
      if (r.status !== 'accepted') throw new Error(`expected ECH accepted, got ${r.status}`);
      gotResult(await passthrough(socket, r, { host: '127.0.0.1', port: backend.port }, first.rest, first.recordVersion));
    });
    const port = await listen(front);
    try {
      const c = await connectEch({
        host: '127.0.0.1',
        port,
        servername: 'secret.example',
        echConfigList: encodeEchConfigList([key.config]),
        ca: pki.caPem,
        ecdhCurve: 'X25519:P-256',
        keyShareGroups: [NamedGroup.x25519],
      });
      expect(c.echStatus).toBe('accepted');
      const up = payload().chunks.slice(0, 16);
      const upSha = createHash('sha256');
      for (const u of up) upSha.update(u);
      const h = createHash('sha256');
      let got = 0;
      let tail = '';
      const ended = new Promise<void>((res, rej) => {
        c.socket.on('data', (d: Buffer) => {
          const take = Math.min(d.length, 16 * MiB - got);
          h.update(d.subarray(0, take));
          got += take;
          tail += d.subarray(take).toString('latin1');
        });
        c.socket.on('end', () => res());
        c.socket.on('error', rej);
      });
      await send(c.socket as unknown as Socket, up, 0);
      c.socket.end();
      await within(ended, 30_000, 'the backend stream and answer');
      expect(h.digest('hex')).toBe(downSha.digest('hex'));
      expect(tail).toBe(`\nsha256 ${upSha.digest('hex')} ${16 * MiB}`);
      const done = await within(result, 10_000, 'passthrough result');
      expect(done.helloRetry).toBe(true);
      expect(done.error).toBeUndefined();
    } finally {
      await new Promise((res) => front.close(res));
      await backend.close();
    }
  }, 60_000);
});
