/**
 * SVCB/HTTPS RDATA (RFC 9460 §2.2) as a structure: decode a record read from
 * DNS, change only its `ech` SvcParam, and encode it again with every other
 * field (priority, TargetName, alpn, port, hints, unknown keys) untouched.
 *
 * @module
 */
import { DecodeError } from '../wire/alert.js';
import { Reader } from '../wire/reader.js';
import { Writer } from '../wire/writer.js';
import { SvcParamKey } from './https-record.js';

/**
 * One SVCB/HTTPS record's RDATA.
 * @group DNS
 * @example
 * ```ts
 * const rr = decodeSvcbRdata(rdata);
 * console.log(rr.priority, rr.target, rr.params.map((p) => p.key));
 * ```
 */
export interface SvcbRdata {
  /** SvcPriority; 0 is AliasMode. */
  priority: number;
  /** TargetName, fully qualified (`.` for the owner itself). */
  target: string;
  /** SvcParams in wire order (strictly increasing keys), values as raw bytes. */
  params: { key: number; value: Uint8Array }[];
}

/**
 * Decode SVCB/HTTPS RDATA. Keys must be strictly increasing (RFC 9460 §2.2);
 * the TargetName must not be compressed.
 * @group DNS
 * @example
 * ```ts
 * const { priority, target, params } = decodeSvcbRdata(rdata);
 * ```
 */
export function decodeSvcbRdata(rdata: Uint8Array): SvcbRdata {
  const r = new Reader(rdata);
  const priority = r.u16('SvcPriority');
  const labels: string[] = [];
  for (;;) {
    const len = r.u8('TargetName label length');
    if (len === 0) break;
    if (len > 63) throw new DecodeError('TargetName is compressed or has a label over 63 bytes');
    labels.push(Buffer.from(r.bytes(len, 'TargetName label')).toString('latin1'));
  }
  const target = labels.length ? `${labels.join('.')}.` : '.';
  const params: SvcbRdata['params'] = [];
  let last = -1;
  while (!r.empty) {
    const key = r.u16('SvcParamKey');
    if (key <= last) throw new DecodeError(`SvcParamKeys not in strictly increasing order (${key} after ${last})`);
    last = key;
    params.push({ key, value: r.bytes16('SvcParamValue') });
  }
  return { priority, target, params };
}

/**
 * Encode SVCB/HTTPS RDATA; params are sorted by key.
 * @group DNS
 * @example
 * ```ts
 * const rdata = encodeSvcbRdata({ priority: 1, target: '.', params: [{ key: 5, value: echConfigList }] });
 * ```
 */
export function encodeSvcbRdata(rr: SvcbRdata): Uint8Array {
  const w = new Writer();
  w.u16(rr.priority);
  if (rr.target !== '.') {
    for (const label of rr.target.replace(/\.$/, '').split('.')) w.bytes8(Buffer.from(label, 'latin1'));
  }
  w.u8(0);
  for (const p of [...rr.params].sort((a, b) => a.key - b.key)) w.u16(p.key).bytes16(p.value);
  return w.finish();
}

/**
 * The same record with its `ech` SvcParam set to `echConfigList` (added in
 * key order when absent); every other field is kept. AliasMode records
 * (priority 0) carry no SvcParams and are returned unchanged.
 * @group DNS
 * @example
 * ```ts
 * const updated = encodeSvcbRdata(withEchParam(decodeSvcbRdata(old), newList));
 * ```
 */
export function withEchParam(rr: SvcbRdata, echConfigList: Uint8Array): SvcbRdata {
  if (rr.priority === 0) return rr;
  const params = rr.params.filter((p) => p.key !== SvcParamKey.ech);
  params.push({ key: SvcParamKey.ech, value: echConfigList });
  params.sort((a, b) => a.key - b.key);
  return { priority: rr.priority, target: rr.target, params };
}

/**
 * The `ech` SvcParam value (an ECHConfigList) of a record, if it has one.
 * @group DNS
 * @example
 * ```ts
 * const list = echParamOf(decodeSvcbRdata(rdata));
 * ```
 */
export function echParamOf(rr: SvcbRdata): Uint8Array | undefined {
  return rr.params.find((p) => p.key === SvcParamKey.ech)?.value;
}
