import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import { GatewayError } from '../errors/index.js';
import { SCHEMAS } from '../openapi/schemas.js';
import type { BodySpec } from './route.js';

const DOCUMENT_ID = 'urn:cynode-gateway:openapi';

/**
 * Compiles request-body validators from the component schemas the API description publishes,
 * so what `/openapi.json` says a route accepts is what the route accepts. One compiler per
 * process; each schema is compiled once.
 */
export function createBodyValidators(): (spec: BodySpec) => (body: unknown) => unknown {
  // strict: false because the schemas carry OpenAPI annotations (writeOnly) ajv does not know.
  // Formats (uuid, date-time) are annotations here: the features parse ids and times themselves,
  // with their own codes, so the schema never refuses what a route's own checks would accept.
  const ajv = new Ajv2020({ strict: false, allErrors: false, validateFormats: false });
  ajv.addSchema({ $id: DOCUMENT_ID, components: { schemas: SCHEMAS } });
  const compiled = new Map<string, ValidateFunction>();
  const validatorOf = (schema: string): ValidateFunction => {
    if (!(schema in SCHEMAS)) throw new Error(`no component schema '${schema}'`);
    let fn = compiled.get(schema);
    if (!fn) {
      fn = ajv.compile({ $ref: `${DOCUMENT_ID}#/components/schemas/${schema}` });
      compiled.set(schema, fn);
    }
    return fn;
  };
  return (spec) => {
    if (spec.parse) return spec.parse;
    if (spec.handlerChecks) return (body) => body;
    const validate = validatorOf(spec.schema);
    const code = spec.invalid ?? 'bad_request';
    return (body) => {
      if (validate(body)) return body;
      const first = validate.errors?.[0];
      const where = first?.instancePath ? first.instancePath.slice(1).replaceAll('/', '.') : 'the body';
      throw new GatewayError(code, `${where} ${first?.message ?? 'is invalid'} (see ${spec.schema} in /openapi.json)`);
    };
  };
}
