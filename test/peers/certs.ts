/**
 * Test-time PKI: a throwaway CA and one leaf certificate for a set of DNS
 * names (or IP addresses), generated with the `openssl` CLI (OpenSSL 3.0).
 *
 * Everything lives in a fresh temporary directory (mode 0700); private keys
 * are written with mode 0600 and never logged. Nothing here is checked in.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export type TestKeyType = 'ec' | 'rsa' | 'ed25519';

export interface TestPkiOptions {
  /** Leaf key type (default 'ec', i.e. ECDSA P-256). */
  keyType?: TestKeyType;
  /** CA key type (default 'ec'). */
  caKeyType?: TestKeyType;
  /** Validity in days (default 2). */
  days?: number;
  /** Common name of the CA (default "ech-server test CA <random>"). */
  caName?: string;
}

export interface TestPki {
  /** Temporary directory holding every file below. */
  dir: string;
  names: string[];
  keyType: TestKeyType;
  caCertPath: string;
  caKeyPath: string;
  caCertPem: string;
  caKeyPem: string;
  /** Leaf certificate alone. */
  certPath: string;
  /** Leaf private key (PKCS#8 PEM, mode 0600). */
  keyPath: string;
  certPem: string;
  keyPem: string;
  /** Leaf followed by the CA certificate. */
  chainPath: string;
  chainPem: string;
  /** Removes the directory. */
  cleanup(): Promise<void>;
}

const OPENSSL_TIMEOUT_MS = 30_000;

function openssl(args: string[], input?: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      'openssl',
      args,
      { timeout: OPENSSL_TIMEOUT_MS, maxBuffer: 1 << 20, env: { ...process.env, OPENSSL_CONF: '/dev/null' } },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException).code;
          const hint = code === 'ENOENT' ? ' (is the openssl CLI installed?)' : '';
          // stderr of openssl never contains key material for these commands.
          reject(new Error(`openssl ${args[0]} failed${hint}: ${err.message}\n${stderr}`));
          return;
        }
        resolve(stdout);
      },
    );
    if (input !== undefined) child.stdin?.end(input);
  });
}

function genpkeyArgs(type: TestKeyType): string[] {
  switch (type) {
    case 'ec':
      return ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256'];
    case 'rsa':
      return ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048'];
    case 'ed25519':
      return ['genpkey', '-algorithm', 'ED25519'];
  }
}

async function generateKey(type: TestKeyType, path: string): Promise<string> {
  // Key to stdout, then written by us with mode 0600 (no umask race).
  const pem = await openssl(genpkeyArgs(type));
  if (!pem.includes('PRIVATE KEY')) throw new Error(`openssl genpkey (${type}) produced no key`);
  await writeFile(path, pem, { mode: 0o600, flag: 'wx' });
  return pem;
}

function sanEntry(name: string): string {
  if (isIP(name)) return `IP:${name}`;
  if (!/^[A-Za-z0-9*]([A-Za-z0-9.*-]*[A-Za-z0-9])?$/.test(name)) {
    throw new Error(`makeTestPki: not a DNS name or IP address: ${JSON.stringify(name)}`);
  }
  return `DNS:${name}`;
}

/** Digest option for signing with the CA key (Ed25519 takes none). */
function digestArgs(caType: TestKeyType): string[] {
  return caType === 'ed25519' ? [] : ['-sha256'];
}

/**
 * Creates a CA and a leaf certificate whose subjectAltName lists `names`
 * (the first one is also the subject CN).
 */
export async function makeTestPki(names: string[], opts: TestPkiOptions = {}): Promise<TestPki> {
  if (names.length === 0) throw new Error('makeTestPki: at least one name is required');
  const keyType = opts.keyType ?? 'ec';
  const caKeyType = opts.caKeyType ?? 'ec';
  const days = String(opts.days ?? 2);
  const san = names.map(sanEntry).join(',');
  const caName = opts.caName ?? `ech-server test CA ${randomBytes(4).toString('hex')}`;

  const dir = await mkdtemp(join(tmpdir(), 'ech-pki-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const caKeyPath = join(dir, 'ca.key');
    const caCertPath = join(dir, 'ca.pem');
    const keyPath = join(dir, 'leaf.key');
    const csrPath = join(dir, 'leaf.csr');
    const certPath = join(dir, 'leaf.pem');
    const chainPath = join(dir, 'chain.pem');
    const cnfPath = join(dir, 'openssl.cnf');

    // A self-contained config, independent of the system openssl.cnf.
    await writeFile(
      cnfPath,
      [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        'CN = placeholder',
        '[v3_ca]',
        'basicConstraints = critical,CA:TRUE',
        'keyUsage = critical,keyCertSign,cRLSign',
        'subjectKeyIdentifier = hash',
        '[v3_leaf]',
        'basicConstraints = critical,CA:FALSE',
        'keyUsage = critical,digitalSignature',
        'extendedKeyUsage = serverAuth,clientAuth',
        'subjectKeyIdentifier = hash',
        'authorityKeyIdentifier = keyid',
        `subjectAltName = ${san}`,
        '',
      ].join('\n'),
    );

    const caKeyPem = await generateKey(caKeyType, caKeyPath);
    await openssl([
      'req', '-new', '-x509', '-config', cnfPath, '-extensions', 'v3_ca',
      '-key', caKeyPath, '-subj', `/CN=${caName}`, '-days', days,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`,
      ...digestArgs(caKeyType), '-out', caCertPath,
    ]);

    const keyPem = await generateKey(keyType, keyPath);
    const cn = names[0] as string;
    await openssl([
      'req', '-new', '-config', cnfPath, '-key', keyPath, '-subj', `/CN=${cn}`, '-out', csrPath,
    ]);
    await openssl([
      'x509', '-req', '-in', csrPath, '-CA', caCertPath, '-CAkey', caKeyPath,
      '-set_serial', `0x${randomBytes(8).toString('hex')}`, '-days', days,
      '-extfile', cnfPath, '-extensions', 'v3_leaf', ...digestArgs(caKeyType), '-out', certPath,
    ]);

    const [caCertPem, certPem] = await Promise.all([readFile(caCertPath, 'utf8'), readFile(certPath, 'utf8')]);
    const chainPem = certPem + caCertPem;
    await writeFile(chainPath, chainPem);
    await rm(csrPath, { force: true });

    return {
      dir,
      names: [...names],
      keyType,
      caCertPath,
      caKeyPath,
      caCertPem,
      caKeyPem,
      certPath,
      keyPath,
      certPem,
      keyPem,
      chainPath,
      chainPem,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

// ------------------------------------------------------------ chains with intermediates

/** One certificate of a {@link TestChainSpec}. */
export interface TestChainCert {
  /** Subject CN; unique within the chain. */
  cn: string;
  /**
   * X.509v3 extensions in OpenSSL config syntax, one per line, e.g.
   * `basicConstraints = critical,CA:TRUE` or `1.3.6.1.4.1.55555.1 = critical,ASN1:NULL`.
   */
  extensions: readonly string[];
  /** Start of validity (default: one hour ago). */
  notBefore?: Date;
  /** End of validity (default: in two days). */
  notAfter?: Date;
  /** Digest the issuer signs with (default sha256). */
  digest?: string;
}

/** A root, intermediates and a leaf, each with its own extensions and dates. */
export interface TestChainSpec {
  root: TestChainCert;
  /** Intermediates from the one the root signs down to the one that signs the leaf. */
  intermediates: readonly TestChainCert[];
  leaf: TestChainCert;
}

/** What {@link makeTestChain} wrote. Every key is ECDSA P-256. */
export interface TestChain {
  dir: string;
  rootPath: string;
  rootPem: string;
  /** The intermediates, leaf side first, in one PEM file (empty string and no file without intermediates). */
  untrustedPath: string | undefined;
  untrustedPem: string;
  leafPath: string;
  leafPem: string;
  /** Leaf private key (PKCS#8 PEM, mode 0600). */
  leafKeyPath: string;
  leafKeyPem: string;
  /** Leaf, then the intermediates leaf side first: what a server presents. */
  chainPath: string;
  chainPem: string;
  /** Removes the directory. */
  cleanup(): Promise<void>;
}

/** Extensions of an ordinary CA certificate (root or intermediate). */
export const CA_EXTENSIONS: readonly string[] = [
  'basicConstraints = critical,CA:TRUE',
  'keyUsage = critical,keyCertSign,cRLSign',
  'subjectKeyIdentifier = hash',
];

/** Extensions of an ordinary TLS server certificate for `names`. */
export function leafExtensions(names: readonly string[]): string[] {
  return [
    'basicConstraints = critical,CA:FALSE',
    'keyUsage = critical,digitalSignature',
    'extendedKeyUsage = serverAuth',
    'subjectKeyIdentifier = hash',
    'authorityKeyIdentifier = keyid',
    `subjectAltName = ${names.map(sanEntry).join(',')}`,
  ];
}

/** `openssl ca` date: YYYYMMDDHHMMSSZ. */
function caDate(d: Date): string {
  return d.toISOString().replace(/[-:T]/g, '').replace(/\.\d+Z$/, 'Z');
}

/**
 * Builds a chain root → intermediates → leaf with `openssl ca`, which takes
 * explicit validity dates (OpenSSL 3.0's `x509` only has `-days`). Each
 * certificate gets exactly the extensions its spec lists.
 */
export async function makeTestChain(spec: TestChainSpec): Promise<TestChain> {
  const dir = await mkdtemp(join(tmpdir(), 'ech-chain-'));
  const cleanup = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    const certs = [spec.root, ...spec.intermediates, spec.leaf];
    const cnfPath = join(dir, 'ca.cnf');
    const extPath = join(dir, 'ext.cnf');
    await mkdir(join(dir, 'newcerts'));
    await writeFile(join(dir, 'index.txt'), '');
    // First byte 0x10..0x7f: a positive serial that is always minimal DER.
    await writeFile(join(dir, 'serial'), `${(0x10 + (randomBytes(1)[0]! % 0x70)).toString(16)}${randomBytes(7).toString('hex')}\n`);
    await writeFile(
      cnfPath,
      [
        '[req]',
        'distinguished_name = dn',
        'prompt = no',
        '[dn]',
        'CN = placeholder',
        '[ca]',
        'default_ca = CA_default',
        '[CA_default]',
        `database = ${join(dir, 'index.txt')}`,
        `new_certs_dir = ${join(dir, 'newcerts')}`,
        `serial = ${join(dir, 'serial')}`,
        'default_md = sha256',
        'policy = policy_any',
        'unique_subject = no',
        'copy_extensions = none',
        'email_in_dn = no',
        '[policy_any]',
        'commonName = supplied',
        '',
      ].join('\n'),
    );
    await writeFile(extPath, certs.map((c, i) => [`[e${i}]`, ...c.extensions].join('\n')).join('\n') + '\n');

    const now = Date.now();
    const paths: { cert: string; key: string }[] = [];
    for (let i = 0; i < certs.length; i++) {
      const c = certs[i]!;
      const key = join(dir, `c${i}.key`);
      const csr = join(dir, `c${i}.csr`);
      const cert = join(dir, `c${i}.pem`);
      await generateKey('ec', key);
      await openssl(['req', '-new', '-config', cnfPath, '-key', key, '-subj', `/CN=${c.cn}`, '-out', csr]);
      const issuer = i === 0 ? ['-selfsign', '-keyfile', key] : ['-cert', paths[i - 1]!.cert, '-keyfile', paths[i - 1]!.key];
      await openssl([
        'ca', '-batch', '-notext', '-config', cnfPath, ...issuer, '-in', csr, '-out', cert,
        '-startdate', caDate(c.notBefore ?? new Date(now - 3600_000)),
        '-enddate', caDate(c.notAfter ?? new Date(now + 2 * 86400_000)),
        '-extfile', extPath, '-extensions', `e${i}`, '-md', c.digest ?? 'sha256',
      ]);
      await rm(csr, { force: true });
      paths.push({ cert, key });
    }
    const pems = await Promise.all(paths.map((p) => readFile(p.cert, 'utf8')));
    const leafIndex = certs.length - 1;
    const untrustedPem = pems.slice(1, leafIndex).reverse().join('');
    const untrustedPath = untrustedPem ? join(dir, 'untrusted.pem') : undefined;
    if (untrustedPath) await writeFile(untrustedPath, untrustedPem);
    const chainPem = pems[leafIndex]! + untrustedPem;
    const chainPath = join(dir, 'chain.pem');
    await writeFile(chainPath, chainPem);
    return {
      dir,
      rootPath: paths[0]!.cert,
      rootPem: pems[0]!,
      untrustedPath,
      untrustedPem,
      leafPath: paths[leafIndex]!.cert,
      leafPem: pems[leafIndex]!,
      leafKeyPath: paths[leafIndex]!.key,
      leafKeyPem: await readFile(paths[leafIndex]!.key, 'utf8'),
      chainPath,
      chainPem,
      cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
