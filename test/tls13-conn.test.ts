// The connection core shared by ServerConnection and ClientConnection
// (src/tls13/conn.ts): the record pump, alerts, key updates and close, with
// a stand-in handshake state machine on top.
import { describe, expect, test } from 'vitest';
import { ConnectionCore, PeerAlertError, type ConnectionCoreOptions } from '../src/tls13/conn.js';
import { PeerAlertError as ReExported } from '../src/tls13/server-handshake.js';
import { RecordLayer } from '../src/tls13/record-layer.js';
import { suiteById } from '../src/tls13/suites.js';
import { trafficKeys, nextTrafficSecret } from '../src/tls13/key-schedule.js';
import { ContentType, HandshakeType } from '../src/tls/constants.js';
import { encodeHandshake, type HandshakeMessage } from '../src/tls/record.js';
import { KeyUpdateRequest, encodeKeyUpdate } from '../src/tls/messages.js';
import { EchError } from '../src/wire/alert.js';

const suite = suiteById(0x1301)!;

function plain(type: number, content: Uint8Array): Uint8Array {
  return Uint8Array.of(type, 0x03, 0x03, content.length >> 8, content.length & 0xff, ...content);
}

/** A peer whose records `core` reads under one application key. */
function keyedPeer(core: ConnectionCore): RecordLayer {
  const secret = new Uint8Array(32).fill(3);
  core.setReadSecret(suite, secret);
  const peer = new RecordLayer();
  peer.setWriteKeys(suite, trafficKeys(suite, secret));
  return peer;
}

const text = (t: string) => new TextEncoder().encode(t);

function harness(extra: Partial<ConnectionCoreOptions> = {}) {
  const sent: Uint8Array[] = [];
  const messages: number[] = [];
  const data: string[] = [];
  let connected = false;
  let peerClosed = 0;
  let failed = 0;
  const core = new ConnectionCore({
    send: (b) => sent.push(b),
    handshake: (m: HandshakeMessage) => {
      messages.push(m.type);
      if (m.type === HandshakeType.finished) connected = true;
      if (m.type === HandshakeType.key_update) core.readKeyUpdate(m);
    },
    connected: () => connected,
    data: (b) => data.push(new TextDecoder().decode(b)),
    peerClosed: () => peerClosed++,
    failed: () => failed++,
    ...extra,
  });
  return { core, sent, messages, data, state: () => ({ connected, peerClosed, failed }) };
}

describe('ConnectionCore', () => {
  test('PeerAlertError is one class, re-exported where it always was', () => {
    expect(ReExported).toBe(PeerAlertError);
  });

  test('handshake messages, split across records and packed in one, reach the state machine in order', async () => {
    const h = harness();
    const a = encodeHandshake(HandshakeType.encrypted_extensions, new Uint8Array(0));
    const b = encodeHandshake(HandshakeType.finished, new Uint8Array(32));
    const both = new Uint8Array([...a, ...b]);
    await h.core.receive(plain(ContentType.handshake, both.subarray(0, 3)));
    expect(h.messages).toEqual([]);
    await h.core.receive(plain(ContentType.handshake, both.subarray(3)));
    expect(h.messages).toEqual([HandshakeType.encrypted_extensions, HandshakeType.finished]);
  });

  test('a record interleaved with a fragmented handshake message is unexpected_message, answered with one alert', async () => {
    const h = harness();
    const m = encodeHandshake(HandshakeType.finished, new Uint8Array(32));
    await h.core.receive(plain(ContentType.handshake, m.subarray(0, 10)));
    const err = (await h.core.receive(plain(ContentType.alert, Uint8Array.of(1, 90))).catch((e: unknown) => e)) as EchError;
    expect(err.alert).toBe('unexpected_message');
    expect(h.sent).toEqual([Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, 10)]);
    expect(h.state().failed).toBe(1);
    // Failed: later input is refused with the same error, nothing more is sent.
    await expect(h.core.receive(plain(ContentType.handshake, m))).rejects.toBe(err);
    expect(h.sent.length).toBe(1);
  });

  test('application data before the handshake is unexpected_message; close_notify then is a PeerAlertError, not answered', async () => {
    const h = harness();
    const peer = keyedPeer(h.core);
    await expect(h.core.receive(peer.encode(ContentType.application_data, Uint8Array.of(1)))).rejects.toMatchObject({ alert: 'unexpected_message' });
    const g = harness();
    const err = await g.core.receive(plain(ContentType.alert, Uint8Array.of(1, 0))).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PeerAlertError);
    expect((err as EchError).alert).toBe('close_notify');
    expect(g.sent).toEqual([]);
  });

  test('an alert record that is not 2 bytes is decode_error', async () => {
    const h = harness();
    await expect(h.core.receive(plain(ContentType.alert, Uint8Array.of(2, 40, 0)))).rejects.toMatchObject({ alert: 'decode_error' });
  });

  test('a fatal alert from the peer ends the connection without an answer', async () => {
    const h = harness();
    await expect(h.core.receive(plain(ContentType.alert, Uint8Array.of(2, 40)))).rejects.toMatchObject({ alert: 'handshake_failure', code: 'ERR_ALERT_RECEIVED' });
    expect(h.sent).toEqual([]);
  });

  test('after close_notify (connected) later records are ignored; our side can still close', async () => {
    const h = harness();
    const peer = keyedPeer(h.core);
    await h.core.receive(peer.encode(ContentType.handshake, encodeHandshake(HandshakeType.finished, new Uint8Array(32))));
    await h.core.receive(new Uint8Array([...peer.encode(ContentType.application_data, text('a')), ...peer.encodeAlert('close_notify'), ...peer.encode(ContentType.application_data, text('b'))]));
    expect(h.data).toEqual(['a']);
    expect(h.state().peerClosed).toBe(1);
    expect(h.core.readClosed).toBe(true);
    await h.core.receive(peer.encode(ContentType.application_data, text('c')));
    expect(h.data).toEqual(['a']);
    h.core.close();
    h.core.close();
    expect(h.sent).toEqual([Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 1, 0)]);
    expect(h.core.writeClosed).toBe(true);
  });

  test('an async handshake step holds later records until it finishes', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const h = harness({
      handshake: async () => {
        order.push('step start');
        await gate;
        order.push('step end');
      },
      connected: () => true,
      data: () => order.push('data'),
    });
    const peer = keyedPeer(h.core);
    const p = h.core.receive(new Uint8Array([...peer.encode(ContentType.handshake, encodeHandshake(HandshakeType.finished, new Uint8Array(32))), ...peer.encode(ContentType.application_data, Uint8Array.of(1))]));
    await new Promise((r) => setTimeout(r, 10));
    expect(order).toEqual(['step start']);
    release();
    await p;
    expect(order).toEqual(['step start', 'step end', 'data']);
  });

  test('KeyUpdate both ways: the peer\'s next key is installed and update_requested answered; counters kept', async () => {
    const h = harness();
    const peerSecret = new Uint8Array(32).fill(7);
    const ourSecret = new Uint8Array(32).fill(9);
    h.core.setReadSecret(suite, peerSecret);
    h.core.setWriteSecret(suite, ourSecret);
    await h.core.receive(new Uint8Array(0));
    // The peer: protects a Finished (to connect) and a KeyUpdate with its key, then data with the next one.
    const peer = new RecordLayer();
    peer.setWriteKeys(suite, trafficKeys(suite, peerSecret));
    const fin = peer.encode(ContentType.handshake, encodeHandshake(HandshakeType.finished, new Uint8Array(32)));
    const ku = peer.encode(ContentType.handshake, encodeHandshake(HandshakeType.key_update, encodeKeyUpdate(KeyUpdateRequest.update_requested)));
    peer.setWriteKeys(suite, trafficKeys(suite, nextTrafficSecret(suite.hash, peerSecret)));
    const after = peer.encode(ContentType.application_data, new TextEncoder().encode('next key'));
    await h.core.receive(new Uint8Array([...fin, ...ku, ...after]));
    expect(h.data).toEqual(['next key']);
    expect(h.core.keyUpdates).toEqual({ sent: 1, received: 1 });
    // Our answer is under our old key; what follows under our next one.
    const reader = new RecordLayer();
    reader.setReadKeys(suite, trafficKeys(suite, ourSecret));
    reader.push(h.sent[0]!);
    const answer = reader.next()!;
    expect(answer.type).toBe(ContentType.handshake);
    expect(Array.from(answer.content)).toEqual(Array.from(encodeHandshake(HandshakeType.key_update, encodeKeyUpdate(KeyUpdateRequest.update_not_requested))));
    h.core.writeData(new TextEncoder().encode('x'));
    reader.setReadKeys(suite, trafficKeys(suite, nextTrafficSecret(suite.hash, ourSecret)));
    reader.push(h.sent[1]!);
    expect(new TextDecoder().decode(reader.next()!.content)).toBe('x');
  });

  test('keyUpdateAfterRecords (the server\'s option) rekeys before the record that reaches it; without it (the client) never', () => {
    for (const limit of [2n, undefined]) {
      const h = harness(limit === undefined ? {} : { keyUpdateAfterRecords: limit });
      h.core.setWriteSecret(suite, new Uint8Array(32).fill(1));
      for (let i = 0; i < 3; i++) h.core.writeData(Uint8Array.of(i));
      h.core.writeData(new Uint8Array(0)); // nothing to send
      expect(h.core.keyUpdates.sent).toBe(limit === undefined ? 0 : 1);
      expect(h.sent.length).toBe(limit === undefined ? 3 : 4);
    }
  });

  test('abort sends the error\'s alert once; a close_notify-coded error becomes internal_error', () => {
    const h = harness();
    h.core.abort(new EchError('ERR_PROTOCOL', 'close_notify', 'x'));
    expect(h.sent).toEqual([Uint8Array.of(ContentType.alert, 3, 3, 0, 2, 2, 80)]);
    h.core.abort(new EchError('ERR_PROTOCOL', 'handshake_failure', 'y'));
    expect(h.sent.length).toBe(1);
    expect(h.state().failed).toBe(1);
  });

  test('input stays in order when records are fed from inside a running receive, and behind an asynchronous handler', async () => {
    const order: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let connected = false;
    // eslint-disable-next-line prefer-const
    let core: ConnectionCore;
    core = new ConnectionCore({
      send: () => undefined,
      handshake: (m) => {
        order.push(`hs${m.type}`);
        if (m.type === HandshakeType.client_hello) return gate.then(() => void order.push('hello done'));
        if (m.type === HandshakeType.finished) connected = true;
        return undefined;
      },
      connected: () => connected,
      data: (b) => {
        const t = new TextDecoder().decode(b);
        order.push(t);
        // Re-entrant: fed while this record is being handled.
        if (t === 'a') void core.receive(peer.encode(ContentType.application_data, text('c')));
      },
    });
    let peer = new RecordLayer();
    // An asynchronous handler: what comes after it waits, even fed synchronously.
    const p1 = core.receive(plain(ContentType.handshake, encodeHandshake(HandshakeType.client_hello, Uint8Array.of(1))));
    const p2 = core.receive(plain(ContentType.handshake, encodeHandshake(HandshakeType.finished, Uint8Array.of(2))));
    expect(order).toEqual([`hs${HandshakeType.client_hello}`]);
    release();
    await Promise.all([p1, p2]);
    expect(order).toEqual([`hs${HandshakeType.client_hello}`, 'hello done', `hs${HandshakeType.finished}`]);
    // Connected, synchronous: 'a' is handled inside receive(); 'c', fed while
    // 'a' is handled, waits for it, and 'b', fed after, waits for 'c'.
    peer = keyedPeer(core);
    const pa = core.receive(peer.encode(ContentType.application_data, text('a')));
    const rb = peer.encode(ContentType.application_data, text('b'));
    expect(order.slice(3)).toEqual(['a']);
    await Promise.all([pa, core.receive(rb)]);
    expect(order.slice(3)).toEqual(['a', 'c', 'b']);
  });
});
