/**
 * TLS of the router's gRPC port, reloaded without a restart: the certificate, key and client CA
 * files are read again every `reload_interval_s`; a changed set that makes a valid TLS context
 * takes over for new connections (open ones keep theirs), a broken one (a half-written rotation,
 * a key that does not match) is logged and the previous set stays. grpc-js 1.14's
 * `createCertificateProviderServerCredentials` applies each update with `setSecureContext`; its
 * own FileWatcherCertificateProvider is not used because it hands on any bytes it reads, and an
 * unusable pair makes grpc-js drop every new connection until the next read.
 */
import fs from 'node:fs/promises';
import { X509Certificate } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import type { GrpcTlsConfig } from '../common/grpc-security-config.js';
import { ConfigError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';

type CertificateProvider = grpc.experimental.CertificateProvider;
type CaListener = grpc.experimental.CaCertificateUpdateListener;
type IdentityListener = grpc.experimental.IdentityCertificateUpdateListener;

interface TlsFiles {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

/** What the router reports about each read of the files (metrics). */
export interface TlsReloadObserver {
  /** A new set took over; `notAfterMs` is the expiry of the server certificate. */
  loaded(notAfterMs: number): void;
  /** Changed files were refused; the previous set stays. */
  rejected(): void;
}

const sameFiles = (a: TlsFiles, b: TlsFiles): boolean => a.cert.equals(b.cert) && a.key.equals(b.key) && (a.ca === undefined ? b.ca === undefined : b.ca !== undefined && a.ca.equals(b.ca));

/** Checks that the files make a TLS context (the key matches the certificate, the PEM parses); throws why not. */
function checkUsable(files: TlsFiles): number {
  createSecureContext({ cert: files.cert, key: files.key, ...(files.ca ? { ca: files.ca } : {}) });
  return Date.parse(new X509Certificate(files.cert).validTo);
}

/** The router's certificate files as a grpc-js CertificateProvider (identity and client CA). */
export class ReloadingTlsFiles implements CertificateProvider {
  private readonly caListeners = new Set<CaListener>();
  private readonly identityListeners = new Set<IdentityListener>();
  private readonly timer: NodeJS.Timeout;
  private reading = false;
  /** The last set refused, so a broken set left in place is reported once, not at every read. */
  private refused: TlsFiles | undefined;

  private constructor(private readonly config: GrpcTlsConfig, private current: TlsFiles, private readonly log: Logger, private readonly observer: TlsReloadObserver) {
    this.timer = setInterval(() => void this.reload(), config.reloadIntervalMs);
    this.timer.unref();
  }

  /** Reads and checks the files once (a ConfigError naming the key if they are unusable), then watches them. */
  static async open(config: GrpcTlsConfig, log: Logger, observer: TlsReloadObserver): Promise<ReloadingTlsFiles> {
    const read = async (key: string, file: string) => {
      try {
        return await fs.readFile(file);
      } catch (err) {
        throw new ConfigError(`router.tls.${key}`, `cannot read ${file}: ${(err as Error).message}`);
      }
    };
    const files: TlsFiles = {
      cert: await read('cert_file', config.certFile),
      key: await read('key_file', config.keyFile),
      ...(config.clientCaFile ? { ca: await read('client_ca_file', config.clientCaFile) } : {}),
    };
    let notAfterMs: number;
    try {
      notAfterMs = checkUsable(files);
    } catch (err) {
      throw new ConfigError('router.tls', `${config.certFile}, ${config.keyFile}${config.clientCaFile ? ` and ${config.clientCaFile}` : ''} do not make a TLS context: ${(err as Error).message}`);
    }
    observer.loaded(notAfterMs);
    log.info({ certFile: config.certFile, clientAuth: config.clientAuth, notAfter: new Date(notAfterMs).toISOString() }, 'gRPC TLS certificate loaded');
    return new ReloadingTlsFiles(config, files, log, observer);
  }

  /** Reads the files again; hands a changed, usable set to the listeners. */
  async reload(): Promise<void> {
    if (this.reading) return;
    this.reading = true;
    try {
      let next: TlsFiles;
      try {
        const [cert, key, ca] = await Promise.all([fs.readFile(this.config.certFile), fs.readFile(this.config.keyFile), this.config.clientCaFile ? fs.readFile(this.config.clientCaFile) : undefined]);
        next = { cert, key, ...(ca ? { ca } : {}) };
      } catch (err) {
        this.observer.rejected();
        this.log.warn({ err: (err as Error).message }, 'gRPC TLS files unreadable; keeping the previous certificate');
        return;
      }
      if (sameFiles(next, this.current) || (this.refused && sameFiles(next, this.refused))) return;
      let notAfterMs: number;
      try {
        notAfterMs = checkUsable(next);
      } catch (err) {
        this.refused = next;
        this.observer.rejected();
        this.log.warn({ err: (err as Error).message, certFile: this.config.certFile }, 'gRPC TLS files changed but do not make a TLS context (a rotation half-written?); keeping the previous certificate');
        return;
      }
      this.current = next;
      this.refused = undefined;
      this.observer.loaded(notAfterMs);
      this.log.info({ certFile: this.config.certFile, notAfter: new Date(notAfterMs).toISOString() }, 'gRPC TLS certificate reloaded; new connections use it');
      for (const l of this.identityListeners) l({ certificate: next.cert, privateKey: next.key });
      if (next.ca) for (const l of this.caListeners) l({ caCertificate: next.ca });
    } finally {
      this.reading = false;
    }
  }

  addCaCertificateListener(listener: CaListener): void {
    this.caListeners.add(listener);
    const ca = this.current.ca;
    if (ca) process.nextTick(() => listener({ caCertificate: ca }));
  }

  removeCaCertificateListener(listener: CaListener): void {
    this.caListeners.delete(listener);
  }

  addIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.add(listener);
    const { cert, key } = this.current;
    process.nextTick(() => listener({ certificate: cert, privateKey: key }));
  }

  removeIdentityCertificateListener(listener: IdentityListener): void {
    this.identityListeners.delete(listener);
  }

  close(): void {
    clearInterval(this.timer);
  }
}

/**
 * Server credentials over `files`: client certificates are requested when client_auth is
 * optional or required, and a connection without a valid one is refused only when required
 * (with optional, an unverified certificate counts as none).
 */
export function tlsServerCredentials(files: ReloadingTlsFiles, clientAuth: GrpcTlsConfig['clientAuth']): grpc.ServerCredentials {
  // grpc-js 1.14's declaration names the first parameter caCertificateProvider, but passes it on
  // as the identity provider; one object is both here, so the order does not matter.
  return grpc.experimental.createCertificateProviderServerCredentials(files, clientAuth === 'none' ? null : files, clientAuth === 'required');
}
