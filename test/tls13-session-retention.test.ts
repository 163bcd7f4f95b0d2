// What a closed connection keeps alive. Node keeps a closed net.Socket
// reachable (through its handle) until the next mark-compact, so whatever
// the socket still refers to after its 'close' survives every scavenge until
// then and is promoted to the old generation. Here the test itself keeps the
// server's raw sockets, as Node does, and checks that the engine objects of a
// closed connection (the ServerSession, its ServerConnection) are no longer
// reachable from them: a full GC collects them.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { Socket } from 'node:net';
import tls from 'node:tls';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { EchFrontEnd } from '../src/front/front-end.js';
import { ServerSession } from '../src/tls13/session.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { makePki, type TestPki } from './tls13-helpers.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const hop = () => new Promise((r) => setTimeout(r, 20));

describe('a closed connection keeps no engine objects alive through its socket', () => {
  let pki: TestPki;
  let fe: EchFrontEnd;
  let port: number;
  const rawSockets: Socket[] = [];
  const tlsSockets: Array<WeakRef<object>> = [];
  const closed: Array<Promise<void>> = [];

  beforeAll(async () => {
    pki = makePki();
    const leaf = pki.leaf('ec', ['alpha.example', 'beta.example', 'cover.example']);
    const key = generateEchKey({ configId: 3, publicName: 'cover.example' });
    fe = new EchFrontEnd({
      keys: new EchKeySet([key]),
      publicName: { cert: leaf.cert, key: leaf.key },
      routes: [
        { serverName: 'alpha.example', cert: leaf.cert, key: leaf.key, action: { respond: 'ech-status' } },
        {
          serverName: 'beta.example',
          cert: leaf.cert,
          key: leaf.key,
          action: {
            // A TlsSocket (a Duplex of plaintext): answer the first read, then end.
            handler: (s) => {
              const t = s as TlsSocket;
              tlsSockets.push(new WeakRef(t), new WeakRef(t.connection));
              t.once('data', () => t.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok'));
            },
          },
        },
      ],
    });
    // Kept by the test for its whole life, as Node keeps a closed socket until a mark-compact.
    fe.server.on('connection', (s: Socket) => {
      rawSockets.push(s);
      closed.push(new Promise((r) => s.once('close', () => r())));
    });
    ({ port } = await fe.listen(0));
  }, 60_000);
  afterAll(async () => {
    await fe?.close();
    pki?.cleanup();
  });

  function get(request: string, end: boolean, servername = 'alpha.example'): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername, ca: pki.caPem, ALPNProtocols: ['http/1.1'] }, () => {
        if (end) s.end(request);
        else s.write(request);
      });
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (got += d));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
  }

  it('the ech-status page on a ServerSession: after close, the session and its engine are collectable while the raw socket lives', async () => {
    const sessions: Array<WeakRef<object>> = [];
    const engines: Array<WeakRef<object>> = [];
    const read = ServerSession.prototype.read;
    // Every session of the ech-status route reads its request through `read`.
    ServerSession.prototype.read = function (this: ServerSession, ...args: Parameters<ServerSession['read']>) {
      if (args[0]) {
        sessions.push(new WeakRef(this));
        engines.push(new WeakRef(this.connection));
      }
      return read.apply(this, args);
    };
    try {
      const answers = await Promise.all([
        get('GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n', false),
        // A client that half-closes right after its request still gets its whole answer.
        get('GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n', true),
        get('GET /?json HTTP/1.0\r\nAccept: application/json\r\n\r\n', true),
      ]);
      for (const a of answers) expect(a).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\r\n\r\n/);
      expect(answers[2]).toContain('"echStatus":"not-offered"');
    } finally {
      ServerSession.prototype.read = read;
    }
    await Promise.all(closed);
    expect(rawSockets.length).toBe(3);
    expect(rawSockets.every((s) => s.destroyed)).toBe(true);
    expect(sessions.length).toBe(3);
    // WeakRef targets are kept until the end of the job that made them: GC in a later one.
    await hop();
    gc();
    await hop();
    gc();
    expect(sessions.filter((r) => r.deref() !== undefined).length).toBe(0);
    expect(engines.filter((r) => r.deref() !== undefined).length).toBe(0);
    expect(rawSockets.length).toBe(3);
  });

  it('a TlsSocket (a handler route): after close, the socket and its engine are collectable while the raw socket lives', async () => {
    const before = rawSockets.length;
    const answers = await Promise.all([
      get('GET / HTTP/1.1\r\nHost: beta.example\r\n\r\n', false, 'beta.example'),
      get('GET / HTTP/1.1\r\nHost: beta.example\r\n\r\n', true, 'beta.example'),
    ]);
    for (const a of answers) expect(a).toBe('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nConnection: close\r\n\r\nok');
    await Promise.all(closed);
    expect(rawSockets.length).toBe(before + 2);
    expect(rawSockets.every((s) => s.destroyed)).toBe(true);
    expect(tlsSockets.length).toBe(4);
    await hop();
    gc();
    await hop();
    gc();
    expect(tlsSockets.filter((r) => r.deref() !== undefined).length).toBe(0);
    expect(rawSockets.length).toBe(before + 2);
  });

  it('every listener left on a closed raw socket is one function shared by all connections: none keeps anything of its connection', async () => {
    const before = rawSockets.length;
    await Promise.all([
      get('GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n', false),
      get('GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n', true),
    ]);
    await Promise.all(closed);
    const [a, b] = rawSockets.slice(before);
    expect(a!.destroyed && b!.destroyed).toBe(true);
    const events = new Set([...a!.eventNames(), ...b!.eventNames()]);
    expect(events.has('close')).toBe(true);
    for (const e of events) {
      const la = a!.rawListeners(e);
      const lb = b!.rawListeners(e);
      expect({ event: e, count: la.length }).toEqual({ event: e, count: lb.length });
      la.forEach((f, i) => expect({ event: e, i, shared: f === lb[i] }).toEqual({ event: e, i, shared: true }));
    }
  });
});
