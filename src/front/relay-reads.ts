/**
 * Socket reads for the relays (split mode and plain passthrough) into
 * memory that is used again, instead of a fresh buffer per read.
 *
 * Why: Node reads a socket into a new 64 KiB ArrayBuffer per read. V8 frees
 * those only at a young-generation GC, which it runs once 32 MiB of them
 * are pending, and until then counts them towards the old generation's
 * limit (Heap::OldGenerationSpaceAvailable adds the external memory
 * allocated since the last mark-compact). Once the old generation holds
 * more than 8 MiB (V8 starts no incremental marking below that) and its
 * limit sits at its minimal slack (size + 16 MiB: V8 sizes it from the
 * old generation's own allocation rate, close to zero while relaying), every
 * 32 MiB relayed starts a full mark-compact. `serve` relaying 768 MiB did 39
 * mark-compacts (a plain `net` pipe proxy, whose heap stays under 8 MiB,
 * one), about twice the pipe proxy's CPU per MiB.
 *
 * How: Node's `onread` socket option (documented for sockets a program
 * creates) reads into a buffer the program supplies. The front end's
 * sockets come from `net.Server` (and the backend pool), which take no such
 * option, so {@link readChunks} switches an existing socket to it the way
 * Node's own constructor does: the three internal symbols `onread` sets
 * (found by their descriptions on a probe socket) and the handle's
 * `useUserBuffer`. Where either is missing (another runtime), the socket is
 * read with `'data'` events as before.
 *
 * Whose memory: a read lands in one buffer shared by every relayed socket of
 * the process (idle connections own none), copied out before the consumer
 * sees it; a socket whose read filled the shared buffer is streaming and
 * gets a buffer of its own (from a small free list), handed to the consumer
 * without a copy. The consumer says whether it kept the chunk (held it, or
 * left it queued in a write that did not complete at once: Node's write
 * then still points into it): a kept buffer is given up for a fresh one.
 * A short read sends the socket back to the shared buffer.
 *
 * @module
 */
import { type OnReadOpts, Socket, type SocketConstructorOpts } from 'node:net';

/**
 * Takes one chunk as read and returns true when it keeps a reference to it
 * beyond the call (held in a queue, or written to a socket whose
 * `writableLength` is not 0 afterwards: see {@link forwardChunk}).
 */
export type ChunkSink = (chunk: Buffer) => boolean;

/** The shared buffer: reads of idle or slow sockets, copied out. */
const SHARED_BYTES = 16 * 1024;
/** A streaming socket's own buffer (Node's own read size). */
const OWN_BYTES = 64 * 1024;
/** Own buffers kept for reuse once their socket went quiet or closed. */
const FREE_MAX = 16;

interface OnreadSymbols {
  buffer: symbol;
  callback: symbol;
  generator: symbol;
}

/** undefined: not probed yet; null: this runtime has no usable `onread` internals. */
let symbols: OnreadSymbols | null | undefined;
let shared: Buffer | undefined;
const free: Buffer[] = [];

/** The symbols under which `net.Socket` keeps its `onread` option, read off a probe socket (no handle, nothing opened). */
function onreadSymbols(): OnreadSymbols | null {
  if (symbols !== undefined) return symbols;
  symbols = null;
  try {
    // `onread` is documented for new sockets (Node's types list it only under connect options).
    const onread: OnReadOpts = { buffer: () => Buffer.alloc(1), callback: () => true };
    const probe = new Socket({ onread } as SocketConstructorOpts);
    const own = Object.getOwnPropertySymbols(probe);
    const find = (d: string) => own.find((s) => s.description === d);
    const [buffer, callback, generator] = [find('kBuffer'), find('kBufferCb'), find('kBufferGen')];
    const p = probe as unknown as Record<symbol, unknown>;
    if (buffer && callback && generator && p[buffer] === true && typeof p[callback] === 'function' && typeof p[generator] === 'function') {
      symbols = { buffer, callback, generator };
    }
    probe.destroy();
  } catch {
    symbols = null;
  }
  return symbols;
}

function ownBuffer(): Buffer {
  return free.pop() ?? Buffer.allocUnsafeSlow(OWN_BYTES);
}

/**
 * Relay one chunk read from `from` to `to`, as `stream.pipe` would: nothing
 * once `to` is finished; `from` paused when `to` is full (the caller resumes
 * it on `to`'s `'drain'`). Returns true when `to` may still hold the chunk:
 * Node queued it, or the kernel took only part of it and the rest is written
 * later from the same memory. A write that completed at once leaves
 * `writableLength` at 0.
 */
export function forwardChunk(from: Socket, to: Socket, chunk: Buffer): boolean {
  if (to.destroyed || to.writableEnded) return false;
  if (!to.write(chunk)) from.pause();
  return to.writableLength > 0;
}

/**
 * Deliver every byte `socket` reads to `sink`, in order, from now on
 * (including bytes Node had already buffered). The socket stays paused or
 * flowing as it was; pausing and resuming it work as usual (a connecting
 * socket starts reading once connected); so do `'end'`, `'close'` and `'error'`, but no
 * `'data'` events are emitted. Returns true when reads go to reused memory,
 * false when the socket could not be switched (no handle, or a runtime
 * without the `onread` internals) and `sink` is fed from `'data'` events.
 */
export function readChunks(socket: Socket, sink: ChunkSink): boolean {
  const sym = onreadSymbols();
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } | null })._handle;
  if (!sym || !handle || typeof handle.useUserBuffer !== 'function' || socket.destroyed) {
    socket.on('data', (d: Buffer) => void sink(d));
    return false;
  }
  const flowing = !socket.isPaused();
  socket.pause();
  // Bytes Node read before the switch (the first-flight reader pauses the
  // socket, Node reads on up to its high-water mark): taken out now, handed
  // to the sink before any read that follows.
  const before = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
  shared ??= Buffer.allocUnsafeSlow(SHARED_BYTES);
  /** The buffer the next read goes to: `shared`, or this socket's own. */
  let next: Buffer = shared;
  const s = socket as unknown as Record<symbol, unknown>;
  s[sym.callback] = (n: number, buf: Buffer): void => {
    if (buf === shared) {
      const copy = Buffer.allocUnsafe(n);
      buf.copy(copy, 0, 0, n);
      // A full shared buffer: more is waiting, the socket is streaming.
      next = n === buf.length ? ownBuffer() : buf;
      sink(copy);
      return;
    }
    const kept = sink(buf.subarray(0, n));
    if (n < SHARED_BYTES) {
      // A short read: the burst is over, back to the shared buffer.
      if (!kept && free.length < FREE_MAX) free.push(buf);
      next = shared!;
    } else if (kept) next = ownBuffer();
  };
  s[sym.generator] = (): Buffer => next;
  s[sym.buffer] = next;
  handle.useUserBuffer(next);
  // As it was: flowing, or paused (taking the bytes out may have restarted
  // the handle's reads; with `onread`, pause() stops the handle itself).
  if (flowing) socket.resume();
  else socket.pause();
  socket.once('close', () => {
    if (next !== shared && free.length < FREE_MAX) free.push(next);
    next = shared!;
  });
  // Before any read that follows (reads come from the event loop), and with
  // the switch done, so that a sink pausing the socket stops its reads.
  if (before) sink(before);
  return true;
}
