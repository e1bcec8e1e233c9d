/**
 * Throwaway X.509 certificates for TLS tests, made by the `openssl` CLI (Node has no X.509
 * generator): CAs, server certificates for 127.0.0.1/localhost, client certificates. P-256 keys,
 * valid for two days; they live in the test's temporary folder and are deleted with it.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

export interface PemPair {
  /** Path of the certificate (PEM). */
  readonly cert: string;
  /** Path of its private key (PEM). */
  readonly key: string;
}

function openssl(args: string[]): void {
  try {
    execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const e = err as { code?: string; stderr?: Buffer };
    throw new Error(e.code === 'ENOENT' ? 'the TLS tests need the openssl CLI (Debian: apt-get install openssl)' : `openssl ${args[0]} failed: ${e.stderr?.toString() ?? String(err)}`, { cause: err });
  }
}

/** A self-signed CA `name` in `dir` (files `<name>.crt`, `<name>.key`). */
export function makeCa(dir: string, name: string): PemPair {
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pair.key, '-out', pair.cert, '-days', '2', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  return pair;
}

/**
 * A certificate with common name `cn` signed by `ca`: a server certificate (SAN 127.0.0.1 and
 * localhost, serverAuth) or a client one (clientAuth). Files `<name>.crt`, `<name>.key`.
 */
export function makeCert(dir: string, name: string, ca: PemPair, options: { cn: string; use: 'server' | 'client' }): PemPair {
  const pair = { cert: path.join(dir, `${name}.crt`), key: path.join(dir, `${name}.key`) };
  const csr = path.join(dir, `${name}.csr`);
  const ext = path.join(dir, `${name}.ext`);
  fs.writeFileSync(ext, options.use === 'server'
    ? 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n'
    : 'extendedKeyUsage=clientAuth\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', pair.key, '-out', csr, '-subj', `/CN=${options.cn}`]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', pair.cert, '-days', '2', '-extfile', ext]);
  return pair;
}
