/**
 * What the logger never writes. Paths follow pino's redaction syntax; the list covers the
 * places a secret can reach a log line: request headers (bearer tokens, the worker PSK
 * header), and any object field whose name says it holds a secret.
 */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-cynode-psk"]',
  'req.headers["x-api-key"]',
  'req.headers.cookie',
  'res.headers["set-cookie"]',
  ...['psk', 'token', 'jwt', 'password', 'secret', 'apiKey', 'api_key', 'masterKey', 'master_key', 'authorization'].flatMap((field) => [
    field,
    `*.${field}`,
    `*.*.${field}`,
  ]),
  'databaseUrl',
  '*.databaseUrl',
  'database.url',
  'config.database.url',
];

export const CENSOR = '[REDACTED]';

/**
 * A connection URL with its password (and any query secret) replaced, safe to log or
 * show in an error: `postgres://app:***@db:5432/gw`.
 */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    for (const name of [...u.searchParams.keys()]) {
      if (/pass|secret|key|token/i.test(name)) u.searchParams.set(name, '***');
    }
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
