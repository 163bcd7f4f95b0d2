// The ech-status page's fast path (serveEchStatus): a one-shot request is
// answered without an http.Server connection, byte for byte as http.Server
// with echStatusHandler answers it; everything else is handed to that
// http.Server with nothing lost. Then end to end through EchFrontEnd with
// Node's TLS client.
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import http from 'node:http';
import tls from 'node:tls';
import { Duplex } from 'node:stream';
import { EventEmitter } from 'node:events';
import { createHook } from 'node:async_hooks';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { EchFrontEnd } from '../src/front/front-end.js';
import { echStatusHandler, serveEchStatus } from '../src/front/ech-status.js';
import type { TlsSocket } from '../src/tls13/socket.js';
import { makePki, type TestPki } from './tls13-helpers.js';

/** A stand-in for a TlsSocket after the handshake: records what is written. */
class FakeTls extends Duplex {
  readonly written: Buffer[] = [];
  ended = false;
  destroySoonCalls = 0;
  noDelay: boolean | undefined;
  readonly encrypted = true;
  readonly attributes = { echStatus: 'accepted', outerServerName: 'cover.example', innerServerName: 'alpha.example', echConfigId: 7 };
  readonly handshake = { helloRetry: false, resumed: false };
  readonly servername = 'alpha.example';
  readonly alpnProtocol = 'http/1.1';
  readonly group = 'X25519';
  constructor() {
    super();
  }
  override _read(): void {}
  override _write(c: Buffer, _e: BufferEncoding, cb: () => void): void {
    this.written.push(Buffer.from(c));
    cb();
  }
  override _final(cb: () => void): void {
    this.ended = true;
    cb();
  }
  getProtocol(): string {
    return 'TLSv1.3';
  }
  getCipher() {
    return { name: 'TLS_AES_128_GCM_SHA256', standardName: 'TLS_AES_128_GCM_SHA256', version: 'TLSv1.3' };
  }
  setNoDelay(v = true): this {
    this.noDelay = v;
    return this;
  }
  setTimeout(): this {
    return this;
  }
  destroySoon(): void {
    this.destroySoonCalls++;
    this.end();
    if (this.writableFinished) this.destroy();
    else this.once('finish', () => this.destroy());
  }
  text(): string {
    // The only byte that may differ between two answers: the Date header's second.
    return Buffer.concat(this.written)
      .toString('latin1')
      .replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: X\r\n');
  }
}

const SITE = 'alpha.example';
const settle = () => new Promise((r) => setTimeout(r, 30));

function appWithCounter() {
  const app = http.createServer(echStatusHandler(SITE));
  app.on('clientError', (_e, s) => s.destroy());
  let connections = 0;
  app.on('connection', () => connections++);
  return { app, connections: () => connections };
}

/** What http.Server alone answers to these chunks, and what the fast path does. */
async function both(chunks: string[], end = false) {
  const ref = new FakeTls();
  const { app: refApp } = appWithCounter();
  refApp.emit('connection', ref);
  for (const c of chunks) ref.push(Buffer.from(c, 'latin1'));
  if (end) ref.push(null);
  await settle();

  const fast = new FakeTls();
  const { app, connections } = appWithCounter();
  serveEchStatus(fast as unknown as TlsSocket, SITE, () => app);
  for (const c of chunks) fast.push(Buffer.from(c, 'latin1'));
  if (end) fast.push(null);
  await settle();
  return { ref, fast, handedOver: connections() === 1 };
}

const ONE_SHOT: Array<[string, string]> = [
  ['HTTP/1.1, Connection: close', 'GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n'],
  ['HTTP/1.1, Connection: Close, odd header spacing', 'GET /x?y=1 HTTP/1.1\r\nHost:alpha.example \r\nconnection:   Close\r\nUser-Agent: t/1.0\r\n\r\n'],
  ['HTTP/1.0 without keep-alive', 'GET / HTTP/1.0\r\n\r\n'],
  ['HEAD', 'HEAD / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n'],
  ['Accept: application/json', 'GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\nAccept: application/json\r\nConnection: close\r\n\r\n'],
  ['Accept without JSON', 'GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html, */*;q=0.8\r\nConnection: close\r\n\r\n'],
];

const HANDED_OVER: Array<[string, string[]]> = [
  ['keep-alive (HTTP/1.1 default), two pipelined requests', ['GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n']],
  ['HTTP/1.0 keep-alive', ['GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n']],
  ['a request split over two reads', ['GET / HTTP/1.1\r\nHost: a\r\n', 'Connection: close\r\n\r\n']],
  ['a POST with a body', ['POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc']],
  ['HTTP/1.1 without Host (http.Server: 400, then the socket is destroyed)', ['GET / HTTP/1.1\r\nConnection: close\r\n\r\n']],
  ['two Host headers', ['GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n']],
  ['Connection: close, upgrade', ['GET / HTTP/1.1\r\nHost: a\r\nConnection: close, upgrade\r\nUpgrade: h2c\r\n\r\n']],
  ['obs-text in a header value', ['GET / HTTP/1.1\r\nHost: a\r\nX-A: \xe9\r\nConnection: close\r\n\r\n']],
  ['bare LF line ends', ['GET / HTTP/1.1\nHost: a\nConnection: close\n\n']],
  ['not HTTP', ['\x16\x03\x01 hello\r\n\r\n']],
  ['Expect: 100-continue', ['GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n']],
];

describe('serveEchStatus', () => {
  it.each(ONE_SHOT)('one-shot request (%s): answered without http.Server, the same bytes, then destroySoon', async (_name, request) => {
    const { ref, fast, handedOver } = await both([request]);
    expect(handedOver).toBe(false);
    expect(ref.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(fast.text()).toBe(ref.text());
    expect(fast.destroySoonCalls).toBe(1);
    expect(ref.destroySoonCalls).toBe(1);
    expect(fast.noDelay).toBe(ref.noDelay);
    expect(fast.ended).toBe(true);
  });

  it('the fast path writes its answer once: content-length counts the UTF-8 bytes of the page, names the client chose are escaped', async () => {
    const fast = new FakeTls();
    Object.assign(fast.attributes, { outerServerName: '<script>"x"&\'y\'</script>' });
    serveEchStatus(fast as unknown as TlsSocket, 'site <&> —', () => {
      throw new Error('not handed over');
    });
    fast.push(Buffer.from(ONE_SHOT[0]![1], 'latin1'));
    await settle();
    expect(fast.written).toHaveLength(1);
    const bytes = Buffer.concat(fast.written);
    const end = bytes.indexOf('\r\n\r\n') + 4;
    expect(Number(/content-length: (\d+)/.exec(bytes.toString('latin1', 0, end))![1])).toBe(bytes.length - end);
    const page = bytes.toString('utf8', end);
    expect(page).toContain('<title>ECH status — site &#60;&#38;&#62; —</title>');
    expect(page).toContain('<tr><th>outerServerName</th><td>&#60;script&#62;&#34;x&#34;&#38;&#39;y&#39;&#60;/script&#62;</td></tr>');
    expect(page).not.toContain('<script>');
  });

  it.each(HANDED_OVER)('anything else (%s): handed to http.Server, which answers as it does alone', async (_name, chunks) => {
    const { ref, fast, handedOver } = await both(chunks);
    expect(handedOver).toBe(true);
    expect(fast.text()).toBe(ref.text());
    expect(fast.destroyed).toBe(ref.destroyed);
    expect(fast.destroySoonCalls).toBe(ref.destroySoonCalls);
  });

  it('a client that half-closes right after its one-shot request still gets the answer', async () => {
    const { ref, fast, handedOver } = await both(['GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'], true);
    expect(handedOver).toBe(false);
    expect(fast.text()).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(fast.text()).toBe(ref.text());
  });

  it('a keep-alive client half-closing after its request: http.Server answers, nothing lost', async () => {
    const { ref, fast, handedOver } = await both(['GET / HTTP/1.1\r\nHost: a\r\n\r\n'], true);
    expect(handedOver).toBe(true);
    expect(fast.text()).toBe(ref.text());
  });

  it('the page reports what the socket saw, HTML and JSON', async () => {
    const { fast } = await both(['GET / HTTP/1.1\r\nHost: a\r\nAccept: application/json\r\nConnection: close\r\n\r\n']);
    const body = fast.text().split('\r\n\r\n')[1]!;
    expect(JSON.parse(body)).toEqual({
      site: SITE,
      echStatus: 'accepted',
      protocol: 'TLSv1.3',
      outerServerName: 'cover.example',
      innerServerName: 'alpha.example',
      servername: 'alpha.example',
      cipher: 'TLS_AES_128_GCM_SHA256',
      group: 'X25519',
      alpn: 'http/1.1',
      helloRetryRequest: false,
      resumed: false,
      configId: 7,
    });
    const { fast: h } = await both(['GET / HTTP/1.0\r\n\r\n']);
    expect(h.text()).toContain('<tr><th>innerServerName</th><td>alpha.example</td></tr>');
    expect(h.text()).toContain('you reached <b>alpha.example</b>');
  });
});

describe('EchFrontEnd ech-status route', () => {
  let pki: TestPki;
  let fe: EchFrontEnd;
  let port: number;
  beforeAll(async () => {
    pki = makePki();
    const leaf = pki.leaf('ec', ['alpha.example', 'cover.example']);
    const key = generateEchKey({ publicName: 'cover.example', configId: 9 });
    fe = new EchFrontEnd({
      keys: new EchKeySet([key]),
      publicName: { cert: leaf.cert, key: leaf.key },
      routes: [{ serverName: 'alpha.example', cert: leaf.cert, key: leaf.key, action: { respond: 'ech-status' } }],
    });
    ({ port } = await fe.listen(0));
  }, 60_000);
  afterAll(async () => {
    await fe?.close();
    pki?.cleanup();
  });

  function get(requests: string[], end = false): Promise<string> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'alpha.example', ca: pki.caPem, ALPNProtocols: ['http/1.1'] }, () => {
        for (const r of requests) s.write(r);
        if (end) s.end();
      });
      let got = '';
      s.setEncoding('latin1');
      s.on('data', (d: string) => (got += d));
      s.on('end', () => resolve(got));
      s.on('error', reject);
    });
  }

  it('a one-shot GET is answered without an http.Server connection; a keep-alive client gets http.Server, both the same page', async () => {
    const emit = vi.spyOn(http.Server.prototype, 'emit');
    const httpConnections = () => emit.mock.calls.filter(([e]) => (e as string) === 'connection').length;
    try {
      const one = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n']);
      expect(httpConnections()).toBe(0);
      // Keep-alive, then a second request that closes: both answered by http.Server.
      const two = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\n\r\n', 'GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n']);
      expect(httpConnections()).toBe(1);
      const norm = (t: string) => t.replace(/\r\nDate: [^\r]*\r\n/g, '\r\nDate: X\r\n');
      const [first, rest] = [norm(one), norm(two)];
      expect(first).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*Connection: close\r\n\r\n<!doctype html>/);
      expect(first).toContain('<tr><th>echStatus</th><td>not-offered</td></tr>');
      expect(first).toContain('<tr><th>servername</th><td>alpha.example</td></tr>');
      expect(rest.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
      expect(rest.endsWith(first.slice(first.indexOf('\r\n\r\n')))).toBe(true);
    } finally {
      emit.mockRestore();
    }
  });
  it('a one-shot request is answered on the raw socket: no TlsSocket stream, 11 listeners added per connection instead of 19', async () => {
    // Listeners added on the server's side (the client is a tls.TLSSocket),
    // by the class of the emitter, over a few one-shot requests.
    const on = vi.spyOn(EventEmitter.prototype, 'on');
    const counts = new Map<string, number>();
    const n = 4;
    try {
      for (let i = 0; i < n; i++) {
        const page = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n']);
        expect(page).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      }
      // Every connection's last listeners run (linger ends on the client's FIN).
      await new Promise((r) => setTimeout(r, 50));
      for (const c of on.mock.contexts) {
        const name = (c as object).constructor.name;
        counts.set(name, (counts.get(name) ?? 0) + 1);
      }
    } finally {
      on.mockRestore();
    }
    expect(counts.get('TlsSocket') ?? 0).toBe(0);
    // On the raw socket: net.Socket's own `end`, the front end's 2, the
    // first-flight reader's 4, the session's data, end, error and close. A
    // TlsSocket made it 13 on the socket and 6 on itself.
    expect((counts.get('Socket') ?? 0) / n).toBeLessThanOrEqual(11);
  });
  it('keep-alive requests with the client\'s close_notify and FIN right after them: http.Server answers both, nothing lost', async () => {
    const got = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\n\r\n', 'GET /x HTTP/1.1\r\nHost: alpha.example\r\n\r\n'], true);
    expect(got.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2);
    expect(got.trimEnd().endsWith('</html>')).toBe(true);
  });
  it('a one-shot request costs the front end, the session and the connection core 1 promise, and no once-wrapper', async () => {
    // Promises created with one of these files on top of the stack (the
    // engine's handshake steps in server-handshake.ts are not counted).
    const ours = /src\/(front\/[\w-]+|tls13\/(session|conn|duplex|socket))\.ts/;
    let promises = 0;
    let counting = false;
    const hook = createHook({
      init(_id, type) {
        if (!counting || type !== 'PROMISE') return;
        const frames = (new Error().stack ?? '').split('\n').slice(1).filter((l) => !l.includes('node:') && !l.includes('(<anonymous>)') && !l.includes('AsyncHook.init'));
        if (frames[0] && ours.test(frames[0])) promises++;
      },
    });
    const once = vi.spyOn(EventEmitter.prototype, 'once');
    const n = 4;
    try {
      hook.enable();
      for (let i = 0; i < n; i++) {
        counting = true;
        const page = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n']);
        await new Promise((r) => setTimeout(r, 20));
        counting = false;
        expect(page).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      }
    } finally {
      hook.disable();
      once.mockRestore();
    }
    // The FIN's wait for the bytes before it. Before: 11 (an async
    // #connection and its awaits, the first flight's promise, a resolved
    // promise and a reaction per read, two reactions per tracked task),
    // then 5 (the ClientHello's task in the core, its result and the idle
    // mark, the session's tracking of it, the decrypted hello's
    // continuation), then 2 once the engine answered a ClientHello without
    // a promise; 1 since the front end takes a local key's decryption
    // result without one.
    expect(promises / n).toBeLessThanOrEqual(1);
    const serverOnce = once.mock.contexts.filter((c) => (c as object).constructor.name !== 'TLSSocket');
    expect(serverOnce).toHaveLength(0);
  });
  /** Async resources of `type` created from files matching `from` over `n` one-shot GETs. */
  async function countCreated(type: string, from: RegExp, n: number): Promise<number> {
    let created = 0;
    let counting = false;
    const hook = createHook({
      init(_id, t) {
        if (counting && t === type && from.test(new Error().stack ?? '')) created++;
      },
    });
    try {
      hook.enable();
      counting = true;
      for (let i = 0; i < n; i++) {
        const page = await get(['GET / HTTP/1.1\r\nHost: alpha.example\r\nConnection: close\r\n\r\n']);
        expect(page).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
      }
      await new Promise((r) => setTimeout(r, 20));
    } finally {
      counting = false;
      hook.disable();
    }
    return created;
  }
  it('a one-shot connection schedules one setImmediate (the answer\'s records), the flight leaving when the ClientHello\'s task ends', async () => {
    const n = 4;
    expect((await countCreated('Immediate', /src\/tls13\/duplex\.ts/, n)) / n).toBe(1);
  });
  it('one-shot connections share the Node timers of their deadlines (first flight, handshake, linger): at most 3 in all, not 3 each', async () => {
    expect(await countCreated('Timeout', /src\/(front|tls13)\//, 4)).toBeLessThanOrEqual(3);
  });
});
