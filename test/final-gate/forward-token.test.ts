import test from 'ava';
import { createRemoteJWKSet, decodeProtectedHeader, generateKeyPair, jwtVerify, SignJWT } from 'jose';
import {
  bodyHash,
  createReplayCache,
  FORWARD_TOKEN_TYPE,
  signForwardToken,
  type VerifyOptions,
  verifyForwardToken,
} from '../../src/final-gate/index.js';
import { ENTRYPOINTS } from '../../src/policy/index.js';
import { bootGateway, type BootedGateway } from '../helpers/boot.js';

// The signer against the contract target services rely on: a compact ES256 JWS that verifies
// with the gateway's published JWKS (fetched over real HTTP), bound to one body, used once.
let gw: BootedGateway;
let keys: ReturnType<typeof createRemoteJWKSet>;
const input = {
  action: 'mcp.tool.invoke',
  subject: { kind: 'worker', node_id: 'n-1' },
  resource: { tool: 'artifacts.artifact_get' },
  context: {},
};
const claims = {
  issuer: 'cynode-gateway',
  audience: 'mcp-upstream:artifacts',
  subject: 'mcp:n-1',
  entrypoint: ENTRYPOINTS.mcpToolInvoke,
  input,
  revision: 'r1',
};
const body = '{"jsonrpc":"2.0","id":"1","method":"tools/call","params":{"name":"artifact_get","arguments":{"task_id":"t"}}}';
const options = (): VerifyOptions => ({
  keys,
  issuer: 'cynode-gateway',
  audience: 'mcp-upstream:artifacts',
  replay: createReplayCache(),
  maxTtlMs: 120_000,
});
const refusal = (p: Promise<unknown>) =>
  p.then(
    () => 'accepted',
    (e: { code?: string }) => e.code,
  );

test.before(async () => {
  gw = await bootGateway({ roles: ['control'] });
  keys = createRemoteJWKSet(new URL(`${gw.url()}/.well-known/jwks.json`));
});
test.after.always(() => gw?.stop());

test('a forward token is a standard ES256 JWT that verifies with the published JWKS, with every claim', async (t) => {
  const key = gw.gateway.keys.current();
  const before = Math.floor(Date.now() / 1000);
  const token = await signForwardToken(key, claims, body, 30_000);
  t.deepEqual(decodeProtectedHeader(token), { alg: 'ES256', kid: key.kid, typ: FORWARD_TOKEN_TYPE });
  const { payload } = await jwtVerify(token, keys, {
    algorithms: ['ES256'],
    typ: FORWARD_TOKEN_TYPE,
    issuer: 'cynode-gateway',
    audience: 'mcp-upstream:artifacts',
  });
  t.like(payload, { sub: 'mcp:n-1', act: ENTRYPOINTS.mcpToolInvoke, rev: 'r1', input });
  t.is(payload.exp! - payload.iat!, 30);
  t.true(payload.iat! >= before && payload.iat! <= before + 1);
  const verified = await verifyForwardToken(token, body, options());
  t.like(verified, { subject: 'mcp:n-1', entrypoint: ENTRYPOINTS.mcpToolInvoke, revision: 'r1', input, jti: payload.jti });
  const other = await signForwardToken(key, claims, body, 30_000);
  t.not(decodeProtectedHeader(other).kid, undefined);
  t.not((await jwtVerify(other, keys)).payload.jti, payload.jti, 'every token has its own id');
});

test('tokens signed the general way (jose) still verify: one contract, two signers', async (t) => {
  const key = gw.gateway.keys.current();
  const token = await new SignJWT({ act: claims.entrypoint, input, rev: 'r1', bh: bodyHash(body) })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: FORWARD_TOKEN_TYPE })
    .setIssuer('cynode-gateway')
    .setAudience('mcp-upstream:artifacts')
    .setSubject('mcp:n-1')
    .setJti('jti-general')
    .setIssuedAt()
    .setExpirationTime('30s')
    .sign(key.privateKey);
  t.like(await verifyForwardToken(token, body, options()), { jti: 'jti-general' });
});

test('forged, tampered, replayed, expired, misaddressed, too long-lived and body-swapped tokens are refused', async (t) => {
  const key = gw.gateway.keys.current();
  const opts = options();
  const token = await signForwardToken(key, claims, body, 30_000);
  const [h, p, s] = token.split('.') as [string, string, string];
  // The claims changed under the gateway's signature: another tool's input.
  const changed = Buffer.from(
    JSON.stringify({ ...JSON.parse(Buffer.from(p, 'base64url').toString()), input: { ...input, resource: { tool: 'x' } } }),
  );
  t.is(await refusal(verifyForwardToken(`${h}.${changed.toString('base64url')}.${s}`, body, opts)), 'forward_token_invalid');
  const flipped = Buffer.from(s, 'base64url');
  flipped[10]! ^= 1;
  t.is(await refusal(verifyForwardToken(`${h}.${p}.${flipped.toString('base64url')}`, body, opts)), 'forward_token_invalid');
  // Forged: the gateway's kid, a key that is not the gateway's.
  const { privateKey } = await generateKeyPair('ES256');
  t.is(
    await refusal(verifyForwardToken(await signForwardToken({ kid: key.kid, privateKey }, claims, body, 30_000), body, opts)),
    'forward_token_invalid',
  );
  t.is(await refusal(verifyForwardToken(token, `${body} `, opts)), 'forward_body_mismatch');
  t.is(await refusal(verifyForwardToken(token, body, opts)), 'accepted');
  t.is(await refusal(verifyForwardToken(token, body, opts)), 'forward_token_replayed');
  const elsewhere = await signForwardToken(key, { ...claims, audience: 'mcp-upstream:billing' }, body, 30_000);
  t.is(await refusal(verifyForwardToken(elsewhere, body, opts)), 'forward_token_invalid');
  t.is(await refusal(verifyForwardToken(await signForwardToken(key, claims, body, 600_000), body, opts)), 'forward_token_invalid');
  const expired = await signForwardToken(key, claims, body, -5000);
  t.is(await refusal(verifyForwardToken(expired, body, opts)), 'forward_token_invalid');
});

test('only a P-256 key signs forward tokens', async (t) => {
  const { privateKey } = await generateKeyPair('ES384');
  await t.throwsAsync(signForwardToken({ kid: 'k', privateKey }, claims, body, 30_000), { message: /P-256/ });
});
