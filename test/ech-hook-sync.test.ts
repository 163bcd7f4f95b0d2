// The client-facing ECH hook and the decryption core create no promise when
// nothing waits: with local keys (or a first ClientHello the front end has
// already decrypted) the hook returns its result itself. Counted with an
// async hook on PROMISE creation. A remote key (here hpke-js, whose setup is
// asynchronous) still gets a promise, and the same answer.
import { createHook } from 'node:async_hooks';
import { describe, expect, it } from 'vitest';
import { EchKeySet } from '../src/keys/key-set.js';
import { generateEchKey } from '../src/keys/generate.js';
import { buildEchClientHello } from '../src/ech/builder.js';
import { createEchSealer } from '../src/ech/sealer.js';
import { decryptClientHello, decryptClientHelloNow } from '../src/ech/decrypt.js';
import { createEchHook } from '../src/tls13/ech-hook.js';
import type { ClientHelloHookInfo, ClientHelloHookResult } from '../src/tls13/config.js';
import { referenceKey, referenceLookup, referenceSealer, x25519Share } from './helpers/reference-keys.js';

const spec = () => ({ serverName: 'secret.example', alpn: ['h2'], keyShares: [x25519Share()] });

function info(message: Uint8Array): ClientHelloHookInfo {
  return {
    get clientHello(): never {
      throw new Error('the ECH hook does not decode ClientHelloOuter');
    },
    message,
    retry: false,
    state: {},
  };
}

/** Promises created while `fn` runs (synchronously). */
function promisesCreatedBy<T>(fn: () => T): { value: T; promises: number } {
  let promises = 0;
  const h = createHook({
    init(_id, type) {
      if (type === 'PROMISE') promises++;
    },
  }).enable();
  try {
    const value = fn();
    return { value, promises };
  } finally {
    h.disable();
  }
}

describe('ECH hook without promises', () => {
  const key = generateEchKey({ publicName: 'cover.example', configId: 0x31, maximumNameLength: 32 });
  const keys = new EchKeySet([key]);
  const outer = async () => (await buildEchClientHello(spec(), { config: key.config, sealer: createEchSealer })).outerMessage;

  it('decrypts with local keys and answers synchronously, creating no promise', async () => {
    const message = await outer();
    const hook = createEchHook({ keys });
    const { value, promises } = promisesCreatedBy(() => hook(info(message)));
    expect(value).not.toBeInstanceOf(Promise);
    expect((value as ClientHelloHookResult).attributes).toMatchObject({ echStatus: 'accepted', innerServerName: 'secret.example' });
    expect(promises).toBe(0);
  });

  it('creates no promise for a ClientHello the front end already decrypted', async () => {
    const message = await outer();
    const first = await decryptClientHello(message, keys);
    const hook = createEchHook({ keys, first });
    const { value, promises } = promisesCreatedBy(() => hook(info(message)));
    expect(value).not.toBeInstanceOf(Promise);
    expect((value as ClientHelloHookResult).decodedClientHello?.hello.random).toEqual(first.status === 'accepted' ? first.inner.random : undefined);
    expect(promises).toBe(0);
  });

  it('decryptClientHelloNow returns the result itself with local keys; decryptClientHello still a promise', async () => {
    const message = await outer();
    const { value, promises } = promisesCreatedBy(() => decryptClientHelloNow(message, keys));
    expect(value).not.toBeInstanceOf(Promise);
    expect(promises).toBe(0);
    expect(value).toMatchObject({ status: 'accepted', innerServerName: 'secret.example' });
    const p = decryptClientHello(message, keys);
    expect(p).toBeInstanceOf(Promise);
    expect(await p).toMatchObject({ status: 'accepted', innerServerName: 'secret.example' });
  });

  it('malformed input is thrown by decryptClientHelloNow and rejected by decryptClientHello', async () => {
    const message = await outer();
    const bad = message.slice();
    // Truncate the extensions: the body's length prefix no longer matches.
    const cut = bad.subarray(0, bad.length - 3);
    expect(() => decryptClientHelloNow(cut, keys)).toThrow();
    await expect(decryptClientHello(cut, keys)).rejects.toThrow();
  });

  it('with a remote (asynchronous) key the hook returns a promise of the same answer', async () => {
    const ref = await referenceKey({ configId: 9, publicName: 'cover.example', maximumNameLength: 32 });
    const lookup = referenceLookup([ref]);
    const message = (await buildEchClientHello(spec(), { config: ref.config, sealer: referenceSealer })).outerMessage;
    const hook = createEchHook({ keys: { ...lookup, candidates: lookup.candidates.bind(lookup), allCandidates: lookup.allCandidates!.bind(lookup), retryConfigList: () => undefined } });
    const r = hook(info(message));
    expect(r).toBeInstanceOf(Promise);
    expect((await r)?.attributes).toMatchObject({ echStatus: 'accepted', innerServerName: 'secret.example' });
  });
});
