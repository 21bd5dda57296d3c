export { ERROR_STATUS, type ErrorCode, statusOf } from './codes.js';
export { GatewayError, isGatewayError } from './gateway-error.js';
