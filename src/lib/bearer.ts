/**
 * The token of an `Authorization: Bearer <token>` header, or undefined when the header is
 * absent or has another shape. Every authenticator reads bearer tokens through this.
 */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  return /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
}
