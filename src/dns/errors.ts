/**
 * Errors of the DNS publishers. They are not TLS failures, so they carry no
 * alert: a stable `code` for programs, and for DNS answers the RCODE and TSIG
 * error the server gave. {@link PublishError} is a `CodedError`, the root of
 * the library's errors that `EchError` shares.
 *
 * @module
 */
import { CodedError } from '../wire/alert.js';

/**
 * Stable codes of {@link PublishError}.
 *
 * - `ERR_DNS_TSIG`: TSIG failed, either the server rejected our signature
 *   (BADSIG, BADKEY, BADTIME) or its answer was unsigned or did not verify;
 * - `ERR_DNS_REFUSED`: the server refused the update (REFUSED, NOTAUTH,
 *   NOTZONE: a name outside the zone, a key the server's policy does not
 *   allow, a zone the server is not primary for);
 * - `ERR_DNS_UNREACHABLE`: no answer after every retry (timeout, connection
 *   refused);
 * - `ERR_DNS_RESPONSE`: an answer that is not a valid response to our message;
 * - `ERR_DNS_UPDATE`: any other failing RCODE (SERVFAIL after retries,
 *   FORMERR, NOTIMP, a prerequisite that kept failing);
 * - `ERR_DNS_CHECK`: the credentials check (`check()`) got an answer that
 *   is not what an authoritative server of the zone sends (a failing RCODE,
 *   no SOA);
 * - `ERR_PUBLISH_FILE`: the file publisher could not write its files;
 * - `ERR_PUBLISH_CONFIG`: the publisher was given unusable settings.
 * @group DNS
 * @example
 * ```ts
 * const retryLater = (code: PublishErrorCode) => code === 'ERR_DNS_UNREACHABLE';
 * ```
 */
export type PublishErrorCode =
  | 'ERR_DNS_TSIG'
  | 'ERR_DNS_REFUSED'
  | 'ERR_DNS_UNREACHABLE'
  | 'ERR_DNS_RESPONSE'
  | 'ERR_DNS_UPDATE'
  | 'ERR_DNS_CHECK'
  | 'ERR_PUBLISH_FILE'
  | 'ERR_PUBLISH_CONFIG';

/**
 * A publishing failure: a {@link CodedError} with the DNS details (no TLS
 * alert: nothing here reaches a TLS peer).
 * @group DNS
 * @example
 * ```ts
 * try { await publisher.publish(['secret.example'], list); }
 * catch (e) {
 *   if (e instanceof PublishError && e.code === 'ERR_DNS_TSIG') console.error('check the TSIG secret:', e.message);
 * }
 * ```
 */
export class PublishError extends CodedError {
  /** Stable machine-readable code. */
  declare readonly code: PublishErrorCode;
  /** The DNS RCODE of the server's answer, e.g. `REFUSED`, when there was one. */
  readonly rcode: string | undefined;
  /** The TSIG error the server reported, e.g. `BADSIG`, when there was one. */
  readonly tsigError: string | undefined;

  constructor(code: PublishErrorCode, message: string, options?: { cause?: unknown; rcode?: string; tsigError?: string }) {
    super(code, message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PublishError';
    this.rcode = options?.rcode;
    this.tsigError = options?.tsigError;
  }
}
