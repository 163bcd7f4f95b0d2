/**
 * What every ECH publisher shares: the names it publishes for and the report
 * it returns. A publisher implements {@link EchPublisher} (declared in
 * `keys/manager.ts`, so the key manager does not depend on `dns/`).
 *
 * @module
 */
import { httpsRecordOwner } from './https-record.js';
import { PublishError } from './errors.js';

/**
 * An origin whose HTTPS record carries the ECHConfigList: a host name and
 * port, and the owner name of its record.
 * @group DNS
 * @example
 * ```ts
 * parseHttpsName('secret.example:8443');
 * // { name: 'secret.example', port: 8443, owner: '_8443._https.secret.example.' }
 * ```
 */
export interface HttpsName {
  /** Host name, without the trailing dot. */
  name: string;
  /** TCP port (443 unless given). */
  port: number;
  /** Owner name of the HTTPS record, fully qualified. */
  owner: string;
}

/**
 * Parse a name as given in configs and on the command line: `HOST` or
 * `HOST:PORT`. For a port other than 443 the record lives at
 * `_PORT._https.HOST` (RFC 9460 §9.1).
 * @group DNS
 * @example
 * ```ts
 * parseHttpsName('secret.example').owner; // 'secret.example.'
 * ```
 */
export function parseHttpsName(text: string): HttpsName {
  const m = /^([^:\s]+?)\.?(?::(\d+))?$/.exec(text.trim());
  if (!m) throw new PublishError('ERR_PUBLISH_CONFIG', `'${text}' is not HOST or HOST:PORT`);
  const port = m[2] === undefined ? 443 : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new PublishError('ERR_PUBLISH_CONFIG', `port in '${text}' is out of range`);
  const name = m[1]!;
  if (!/^([A-Za-z0-9_]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)*[A-Za-z0-9_]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(name) || name.length > 253) {
    throw new PublishError('ERR_PUBLISH_CONFIG', `'${name}' is not a valid DNS name`);
  }
  let owner: string;
  try {
    owner = httpsRecordOwner({ name, port });
  } catch (e) {
    throw new PublishError('ERR_PUBLISH_CONFIG', (e as Error).message, { cause: e });
  }
  return { name, port, owner };
}

/**
 * What a publisher did for one name.
 * - `updated`: the record existed and its `ech` SvcParam was replaced;
 * - `unchanged`: the record already carried this ECHConfigList;
 * - `created`: there was no HTTPS record and `createIfMissing` made one;
 * - `skipped`: there was no HTTPS record and none was made;
 * - `written`: the file publisher wrote it.
 * @group DNS
 * @example
 * ```ts
 * const outcome: PublishOutcome = { name: 'secret.example', owner: 'secret.example.', action: 'updated', records: 1 };
 * ```
 */
export interface PublishOutcome {
  name: string;
  owner: string;
  action: 'updated' | 'unchanged' | 'created' | 'skipped' | 'written';
  /** Number of HTTPS records at the owner after publishing. */
  records: number;
  /** TTL, in seconds, of the records as published (the configured `ttl`). */
  ttl?: number;
  /**
   * The largest TTL, in seconds, the server served for this owner's HTTPS
   * records before the update: how long a resolver may still hand out the
   * previous ECHConfigList.
   */
  previousTtl?: number;
}

/**
 * What one `publish` call did.
 * @group DNS
 * @example
 * ```ts
 * const report: PublishReport = await publisher.publish(['secret.example'], list);
 * for (const n of report.names) console.log(n.name, n.action);
 * ```
 */
export interface PublishReport {
  /** `rfc2136` or `file`. */
  publisher: string;
  names: PublishOutcome[];
  /** Files written (file publisher). */
  files?: string[];
  /**
   * The longest time, in seconds, a resolver may keep serving the list this
   * publish replaced: the largest of every name's published and previous
   * TTL. The key manager retires the keys this publish withdrew no earlier
   * than this plus its margin.
   */
  maxTtl?: number;
}
