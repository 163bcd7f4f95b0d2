/**
 * Promises per server handshake, counted. Each promise is a JS-heap object,
 * a microtask and, for an `await`, a suspended frame: the server answers a
 * ClientHello synchronously when every callback it runs returns a value (no
 * hook or a synchronous one, no SNICallback, a local signing key), and only
 * waits on the promises callbacks return.
 */
import { createHook } from 'node:async_hooks';
import { describe, expect, test } from 'vitest';
import { localhostPki } from './tls13-helpers.js';
import { ServerConnection } from '../src/tls13/server-handshake.js';
import { ClientConnection } from '../src/tls13/client.js';
import { resolveServerConfig, type ServerConfig } from '../src/tls13/config.js';
import type { ClientHelloHook } from '../src/tls13/config.js';
import { parseClientHelloOwned } from '../src/tls/client-hello.js';

const local = localhostPki();

/** The engine's files (the handshake, its core, the certificate's signing). */
const ENGINE = /src\/(tls13\/(server-handshake|conn)|keys\/certificates)\.ts/;

/**
 * One full handshake between the server engine and the client engine, each
 * side's bytes delivered in a later turn (setImmediate) as a socket would:
 * the in-memory pair of tls13-helpers delivers within `send`, which nests
 * the client's answer inside the server's task.
 */
function handshake(config: ServerConfig): Promise<{ server: ServerConnection; client: ClientConnection }> {
  return new Promise((resolve, reject) => {
    let done = 0;
    const finish = (): void => {
      if (++done === 2) resolve({ server, client });
    };
    const server: ServerConnection = new ServerConnection(config, {
      send: (b) => setImmediate(() => client.receive(b).catch(reject)),
      handshakeComplete: finish,
    });
    const client: ClientConnection = new ClientConnection(
      { servername: 'localhost', ca: local.pki.caPem, ALPNProtocols: ['h2'] },
      {
        send: (b) => setImmediate(() => server.receive(b).catch(reject)),
        handshakeComplete: finish,
      },
    );
    client.start();
  });
}

/** Promises created with an engine frame on top of the stack, per full handshake, over `n` of them. */
async function promisesPerHandshake(config: ServerConfig, n: number): Promise<number> {
  let count = 0;
  let counting = false;
  const hook = createHook({
    init(_id, type) {
      if (!counting || type !== 'PROMISE') return;
      const frames = (new Error().stack ?? '').split('\n').slice(1).filter((l) => !l.includes('node:') && !l.includes('(<anonymous>)') && !l.includes('AsyncHook.init'));
      // The server's side only: the client engine runs on a ConnectionCore too.
      if (frames[0] && ENGINE.test(frames[0]) && !frames.some((f) => f.includes('ClientConnection'))) count++;
    },
  });
  hook.enable();
  try {
    for (let i = 0; i < n; i++) {
      counting = true;
      const { server } = await handshake(config);
      counting = false;
      expect(server.info?.resumed).toBe(false);
      expect(server.info?.alpnProtocol).toBe('h2');
    }
  } finally {
    hook.disable();
  }
  return count / n;
}

/** A hook that replaces the ClientHello with its own decoded copy (as the ECH hook does with ClientHelloInner). */
const replacing: ClientHelloHook = ({ message }) => {
  const copy = new Uint8Array(message);
  return { decodedClientHello: { message: copy, hello: parseClientHelloOwned(copy.subarray(4)) }, attributes: { hooked: true } };
};

describe('server engine promises per full handshake', () => {
  const base = () => ({ key: local.leaf.key, cert: local.leaf.cert, sessionTickets: 1, ALPNProtocols: ['h2'] });

  test('without a hook, with a local signing key: no promise at all', async () => {
    // Before: 13 (the ClientHello's async steps, the flight, the hello,
    // the signature and their awaits, each a promise even on a value).
    expect(await promisesPerHandshake(resolveServerConfig(base()), 5)).toBe(0);
  });

  test('a hook that returns its result synchronously: no promise either', async () => {
    const config = resolveServerConfig({ ...base(), onClientHello: replacing });
    // Before: 15 (an await of the hook's value too).
    expect(await promisesPerHandshake(config, 5)).toBe(0);
  });

  test('an asynchronous hook: the handshake waits on its promise only (4 promises: the wait for it, the core\'s continuation, the task\'s result and its idle mark)', async () => {
    const config = resolveServerConfig({ ...base(), onClientHello: async (info) => replacing(info) });
    // Before: 14.
    expect(await promisesPerHandshake(config, 5)).toBeLessThanOrEqual(4);
  });
});
