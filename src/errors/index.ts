export { ERROR_STATUS, type ErrorCode, isErrorCode, statusOf } from './codes.js';
export { GatewayError, isGatewayError } from './gateway-error.js';
