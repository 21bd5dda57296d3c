import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHttpClient } from '../../src/lib/http-client.js';
import { TEST_ADMIN_TOKEN, tempDir } from './config.js';

/** A certificate and its key, as files and as PEM. */
export interface CertFiles {
  certFile: string;
  keyFile: string;
  cert: Buffer;
  key: Buffer;
}

/** A certificate authority made at test time: it signs server and client certificates. */
export interface TestCa extends CertFiles {
  /** A certificate for 127.0.0.1 and localhost (server auth). */
  server(name?: string): CertFiles;
  /** A client certificate with this common name and DNS names (client auth). */
  client(commonName: string, dnsNames?: string[]): CertFiles;
}

const openssl = (dir: string, args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

/** A fresh CA (EC P-256, one day) in its own temp folder, made with the openssl CLI. */
export function createTestCa(name = 'cynode test CA'): TestCa {
  const dir = tempDir('cynode-pki-');
  openssl(dir, ['req', '-x509', ...ecKey, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '1', '-subj', `/CN=${name}`]);
  const files = (base: string): CertFiles => ({
    certFile: join(dir, `${base}.crt`),
    keyFile: join(dir, `${base}.key`),
    cert: readFileSync(join(dir, `${base}.crt`)),
    key: readFileSync(join(dir, `${base}.key`)),
  });
  const sign = (commonName: string, extensions: string): CertFiles => {
    const base = `leaf-${randomBytes(6).toString('hex')}`;
    writeFileSync(join(dir, `${base}.ext`), `basicConstraints=CA:FALSE\n${extensions}\n`);
    openssl(dir, ['req', ...ecKey, '-keyout', `${base}.key`, '-out', `${base}.csr`, '-subj', `/CN=${commonName}`]);
    openssl(
      dir,
      [
        'x509',
        '-req',
        '-in',
        `${base}.csr`,
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.key',
        '-set_serial',
        `0x${randomBytes(8).toString('hex')}`,
      ].concat(['-days', '1', '-out', `${base}.crt`, '-extfile', `${base}.ext`]),
    );
    return files(base);
  };
  return {
    ...files('ca'),
    server: (serverName = 'cynode test server') =>
      sign(serverName, 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth'),
    client: (commonName, dnsNames = []) =>
      sign(
        commonName,
        `${dnsNames.length > 0 ? `subjectAltName=${dnsNames.map((d) => `DNS:${d}`).join(',')}\n` : ''}extendedKeyUsage=clientAuth`,
      ),
  };
}

/** One JSON request over HTTPS trusting `ca` (and presenting `client` when given); admin token unless `token` says otherwise. */
export async function httpsCall(
  base: string,
  path: string,
  options: { ca: Buffer; client?: CertFiles; json?: unknown; token?: string | null; headers?: Record<string, string>; method?: string },
): Promise<{ status: number; body: Record<string, any> }> {
  const http = createHttpClient({
    maxSockets: 1,
    tls: { ca: options.ca, ...(options.client && { cert: options.client.cert, key: options.client.key }) },
  });
  try {
    const token = options.token === undefined ? TEST_ADMIN_TOKEN : options.token;
    const headers: Record<string, string> = { ...options.headers, ...(token && { authorization: `Bearer ${token}` }) };
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    const res = await http.request(new URL(base + path), {
      method: options.method ?? (options.json === undefined ? 'GET' : 'POST'),
      headers,
      ...(options.json !== undefined && { body: JSON.stringify(options.json) }),
      totalTimeoutMs: 10_000,
    });
    const text = await res.text();
    return { status: res.status, body: text && String(res.headers['content-type']).includes('json') ? JSON.parse(text) : { text } };
  } finally {
    http.close();
  }
}
