/**
 * One HTTP request over a TLS connection that may offer ECH: the client the
 * demo and the examples drive a server with. Public as `ech-server/testing`.
 *
 * @module
 */
import { connectEch, type EchConnectOptions, type EchConnectResult } from '../tls13/ech-client.js';

/**
 * One HTTP request over a TLS connection that may offer ECH, as the demo
 * and the examples make it. The default, {@link echRequest}, uses the
 * library's ECH client (`connectEch`); tests pass another peer.
 * @group Testing
 * @example
 * ```ts
 * const r = await echRequest({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList, ca, request: 'GET / HTTP/1.1\r\n...' });
 * console.log(r.echStatus, r.retried, r.response);
 * ```
 */
export type EchRequest = (options: EchRequestOptions) => Promise<EchRequestResult>;

/**
 * Options of an {@link EchRequest}: the ECH client's own options
 * ({@link EchConnectOptions}: `host`, `port`, `servername` — the inner name
 * when ECH is offered —, `echConfigList`, `grease`, `retry`), plus the CA to
 * trust and the request to send.
 * @group Testing
 */
export interface EchRequestOptions extends Pick<EchConnectOptions, 'host' | 'port' | 'servername' | 'echConfigList' | 'grease' | 'retry'> {
  /** CA certificates (PEM) to verify the server with. */
  ca: string;
  /** Bytes to send once connected; the answer is read until the server closes. */
  request: string;
}

/**
 * What an {@link EchRequest} got: the ECH client's `echStatus` and `retried`
 * ({@link EchConnectResult}) and the answer.
 * @group Testing
 */
export interface EchRequestResult extends Pick<EchConnectResult, 'echStatus' | 'retried'> {
  /** Everything the server sent back. */
  response: string;
}

/**
 * The default {@link EchRequest}: the library's ECH client (`connectEch`).
 * @group Testing
 * @example
 * ```ts
 * const r = await echRequest({ host: '127.0.0.1', port, servername: 'alpha.example', echConfigList, ca, request });
 * ```
 */
export const echRequest: EchRequest = async (o) => {
  const c = await connectEch({
    host: o.host,
    port: o.port,
    servername: o.servername,
    ...(o.echConfigList ? { echConfigList: o.echConfigList } : {}),
    ...(o.grease ? { grease: true } : {}),
    ...(o.retry ? { retry: true } : {}),
    ca: o.ca,
    ALPNProtocols: ['http/1.1'],
    timeoutMs: 10_000,
  });
  const response = await new Promise<string>((res, rej) => {
    let text = '';
    const t = setTimeout(() => {
      c.socket.destroy();
      rej(new Error('no answer within 10 s'));
    }, 10_000);
    c.socket.on('data', (d: Buffer) => (text += d.toString('utf8')));
    c.socket.once('end', () => {
      clearTimeout(t);
      res(text);
    });
    c.socket.once('close', () => {
      clearTimeout(t);
      res(text);
    });
    c.socket.once('error', (e) => {
      clearTimeout(t);
      rej(e);
    });
    c.socket.write(o.request);
  });
  c.socket.destroy();
  return { echStatus: c.echStatus, retried: c.retried, response };
};
