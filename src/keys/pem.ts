/**
 * The ECH PEM key file (RFC 9934 §3): an optional PKCS#8 `PRIVATE KEY` block
 * followed by an `ECHCONFIG` block holding the base64 ECHConfigList. This is
 * the format OpenSSL's ECH support reads and writes.
 *
 * @module
 */
import { EchError } from '../wire/alert.js';
import { fromBase64, toBase64 } from '../wire/bytes.js';

/**
 * The blocks of an ECH PEM file.
 * @group Keys
 */
export interface EchPemFile {
  /** PKCS#8 DER of the private key, if the file has one. */
  privateKeyPkcs8?: Uint8Array;
  /** The ECHConfigList bytes. */
  echConfigList: Uint8Array;
}

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;

function keyFileError(message: string): EchError {
  return new EchError('ERR_KEY_FILE', 'internal_error', message);
}

/**
 * Parse an ECH PEM file. RFC 9934 §3: "zero or one private key and one
 * encoded ECHConfigList", the key first; "Any content after the PEM encoded
 * ECHConfigList SHOULD be ignored." Throws an {@link EchError} with code
 * `ERR_KEY_FILE` for anything else. The ECHConfigList is not decoded here.
 * @group Keys
 * @example
 * ```ts
 * const { privateKeyPkcs8, echConfigList } = parseEchPem(await readFile('ech.pem', 'utf8'));
 * ```
 */
export function parseEchPem(text: string): EchPemFile {
  let privateKeyPkcs8: Uint8Array | undefined;
  let echConfigList: Uint8Array | undefined;
  for (const m of text.matchAll(BLOCK)) {
    const label = m[1]!;
    if (echConfigList) break; // content after the ECHCONFIG block is ignored
    let body: Uint8Array;
    try {
      body = fromBase64(m[2]!);
    } catch {
      throw keyFileError(`the ${label} block is not valid base64`);
    }
    if (label === 'PRIVATE KEY') {
      if (privateKeyPkcs8) throw keyFileError('more than one PRIVATE KEY block');
      privateKeyPkcs8 = body;
    } else if (label === 'ECHCONFIG') {
      echConfigList = body;
    } else {
      throw keyFileError(`unexpected PEM block '${label}' (an ECH key file holds PRIVATE KEY and ECHCONFIG)`);
    }
  }
  if (!echConfigList) throw keyFileError('no ECHCONFIG block');
  return privateKeyPkcs8 ? { privateKeyPkcs8, echConfigList } : { echConfigList };
}

function pemBlock(label: string, der: Uint8Array): string {
  const b64 = toBase64(der);
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

/**
 * Format an ECH PEM file: the private key block (if any), then the ECHCONFIG
 * block.
 * @group Keys
 * @example
 * ```ts
 * const text = formatEchPem({ privateKeyPkcs8, echConfigList });
 * ```
 */
export function formatEchPem(file: EchPemFile): string {
  return (file.privateKeyPkcs8 ? pemBlock('PRIVATE KEY', file.privateKeyPkcs8) : '') + pemBlock('ECHCONFIG', file.echConfigList);
}
