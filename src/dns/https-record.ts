/**
 * HTTPS/SVCB resource records carrying the `ech` SvcParam
 * (draft-ietf-tls-svcb-ech, RFC 9460): zone-file presentation and the RDATA
 * wire form.
 *
 * @module
 */
import { InvalidArgumentError } from '../wire/alert.js';
import { toBase64 } from '../wire/bytes.js';
import { Writer } from '../wire/writer.js';

/**
 * SvcParamKeys (RFC 9460 §14.3.2).
 * @group DNS
 */
export const SvcParamKey = {
  mandatory: 0,
  alpn: 1,
  'no-default-alpn': 2,
  port: 3,
  ipv4hint: 4,
  ech: 5,
  ipv6hint: 6,
} as const;
/** @group DNS */
export type SvcParamKey = keyof typeof SvcParamKey;

/**
 * What one HTTPS record says.
 * @group DNS
 */
export interface HttpsRecordOptions {
  /** The origin's host name, e.g. `secret.example`. */
  name: string;
  /** The ECHConfigList (the `ech` SvcParam value). */
  echConfigList: Uint8Array;
  /** TCP port; default 443. For another port the owner is `_PORT._https.NAME`. */
  port?: number;
  /** ALPN ids, e.g. `['h2', 'http/1.1']`. */
  alpn?: string[];
  /** SvcPriority; default 1 (ServiceMode). */
  priority?: number;
  /**
   * TargetName; default `.` (the owner) on port 443, and the origin name on
   * other ports: Chromium ignores an HTTPS record at `_PORT._https.NAME`
   * whose TargetName is `.`.
   */
  target?: string;
  /** TTL for the zone line; default 300. */
  ttl?: number;
}

function fqdn(name: string): string {
  return name.endsWith('.') ? name : `${name}.`;
}

function checkName(name: string, what: string): void {
  if (name === '.') return;
  const n = name.replace(/\.$/, '');
  if (!n || n.length > 253 || !n.split('.').every((l) => /^[A-Za-z0-9_]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l))) {
    throw new InvalidArgumentError(`${what} '${name}' is not a valid DNS name`);
  }
}

function resolved(opts: HttpsRecordOptions) {
  checkName(opts.name, 'name');
  const port = opts.port ?? 443;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new InvalidArgumentError(`port ${port} out of range`);
  const owner = port === 443 ? fqdn(opts.name) : `_${port}._https.${fqdn(opts.name)}`;
  const target = opts.target ?? (port === 443 ? '.' : fqdn(opts.name));
  checkName(target, 'target');
  for (const a of opts.alpn ?? []) {
    // RFC 9460 §7.1.1: alpn-ids in presentation form are a comma-separated
    // list; commas and backslashes would need escaping, which the ech
    // draft's "MUST NOT contain escape sequences" spirit keeps us away from.
    if (!a || a.length > 255 || /[,\\"\s]/.test(a)) throw new InvalidArgumentError(`ALPN id '${a}' cannot be written plainly`);
  }
  const priority = opts.priority ?? 1;
  if (!Number.isInteger(priority) || priority < 1 || priority > 65535) throw new InvalidArgumentError('priority must be 1 to 65535 (ServiceMode)');
  return { owner, target: target === '.' ? '.' : fqdn(target), port, priority, ttl: opts.ttl ?? 300, alpn: opts.alpn ?? [] };
}

/**
 * The record in zone-file syntax, e.g.
 * `secret.example. 300 IN HTTPS 1 . alpn="h2,http/1.1" ech=AEX+DQ...`.
 * @group DNS
 * @example
 * ```ts
 * console.log(httpsRecordZoneLine({ name: 'secret.example', echConfigList: keys.retryConfigList()!, alpn: ['h2'] }));
 * ```
 */
export function httpsRecordZoneLine(opts: HttpsRecordOptions): string {
  const r = resolved(opts);
  const params: string[] = [];
  if (r.alpn.length) params.push(`alpn="${r.alpn.join(',')}"`);
  if (r.port !== 443) params.push(`port=${r.port}`);
  params.push(`ech=${toBase64(opts.echConfigList)}`);
  return `${r.owner} ${r.ttl} IN HTTPS ${r.priority} ${r.target} ${params.join(' ')}`;
}

/** The owner name of the record (`NAME.` or `_PORT._https.NAME.`). @group DNS */
export function httpsRecordOwner(opts: Pick<HttpsRecordOptions, 'name' | 'port'>): string {
  const port = opts.port ?? 443;
  return port === 443 ? fqdn(opts.name) : `_${port}._https.${fqdn(opts.name)}`;
}

function writeDnsName(w: Writer, name: string): void {
  if (name !== '.') {
    for (const label of name.replace(/\.$/, '').split('.')) w.bytes8(Buffer.from(label, 'ascii'));
  }
  w.u8(0);
}

/**
 * The record's RDATA in wire form (RFC 9460 §2.2): SvcPriority, TargetName,
 * SvcParams in increasing key order.
 * @group DNS
 * @example
 * ```ts
 * const rdata = httpsRecordRdata({ name: 'secret.example', echConfigList });
 * ```
 */
export function httpsRecordRdata(opts: HttpsRecordOptions): Uint8Array {
  const r = resolved(opts);
  const w = new Writer();
  w.u16(r.priority);
  writeDnsName(w, r.target);
  if (r.alpn.length) {
    w.u16(SvcParamKey.alpn);
    w.vector16((v) => {
      for (const a of r.alpn) v.bytes8(Buffer.from(a, 'latin1'));
    });
  }
  if (r.port !== 443) w.u16(SvcParamKey.port).u16(2).u16(r.port);
  w.u16(SvcParamKey.ech).bytes16(opts.echConfigList);
  return w.finish();
}
