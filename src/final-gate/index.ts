/**
 * The final-gate library for target services (`cynode-gateway/final-gate`): verify the
 * gateway's forward token and re-decide with the same policy bundle before acting.
 */
export { createFinalGate, type FinalGate, type FinalGateOptions, type FinalGateResult } from './gate.js';
export { type GatewayTransport, GatewayTransportError, readGatewayTransport } from '../lib/gateway-transport.js';
export {
  bodyHash,
  createReplayCache,
  FORWARD_TOKEN_HEADER,
  FORWARD_TOKEN_TYPE,
  type ForwardClaims,
  type ReplayCache,
  signForwardToken,
  type VerifiedForward,
  type VerifyOptions,
  verifyForwardToken,
} from './forward-token.js';
