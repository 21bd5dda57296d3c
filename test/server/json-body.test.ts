import test from 'ava';
import { isGatewayError } from '../../src/errors/index.js';
import { MAX_JSON_DEPTH, parseJsonBody } from '../../src/server/json-body.js';

const parse = (text: string) => parseJsonBody(Buffer.from(text, 'utf8'));
const refusal = (text: string) => {
  try {
    parse(text);
  } catch (err) {
    return isGatewayError(err) ? err.code : 'other';
  }
  return undefined;
};

test('NUL and unpaired surrogates are refused however they are written', (t) => {
  t.is(refusal('{"a":"x\\u0000y"}'), 'bad_request');
  t.is(refusal('{"x\\u0000":1}'), 'bad_request');
  t.is(refusal('["\\ud800"]'), 'bad_request');
  t.is(refusal('["\\uDC00 alone"]'), 'bad_request');
  t.is(refusal('{"deep":[[{"k":"\\udbff"}]]}'), 'bad_request');
  t.is(refusal('"\\u0000"'), 'bad_request');
});

test('text that only looks suspect is accepted as it is', (t) => {
  t.deepEqual(parse('{"a":"\\\\u0000"}'), { a: '\\u0000' }, 'an escaped backslash before u0000 is no NUL');
  t.deepEqual(parse('["\\ud83d\\ude00"]'), ['\u{1F600}'], 'a surrogate pair is one character');
  t.deepEqual(parse(`{"s":"${'{['.repeat(200)}"}`), { s: '{['.repeat(200) }, 'brackets inside a string do not nest');
  t.is(refusal('{"a":'), 'invalid_json');
});

test(`nesting is refused past ${MAX_JSON_DEPTH} levels and accepted up to it`, (t) => {
  const nested = (n: number) => '['.repeat(n) + ']'.repeat(n);
  t.notThrows(() => parse(nested(MAX_JSON_DEPTH)));
  t.is(refusal(nested(MAX_JSON_DEPTH + 1)), 'bad_request');
  t.is(refusal(`{"a":${'{"b":'.repeat(MAX_JSON_DEPTH)}1${'}'.repeat(MAX_JSON_DEPTH)}}`), 'bad_request');
  const wide = `[${Array.from({ length: 300 }, () => '{"x":[1]}').join(',')}]`;
  t.is((parse(wide) as unknown[]).length, 300, 'many brackets side by side are shallow');
});

test('a short body is never walked for depth, and a long one counts both kinds of bracket', (t) => {
  const mixed = (n: number) => '[{"a":'.repeat(n / 2) + '1' + '}]'.repeat(n / 2);
  t.notThrows(() => parse(mixed(MAX_JSON_DEPTH)));
  t.is(refusal(mixed(MAX_JSON_DEPTH + 2)), 'bad_request');
  t.notThrows(() => parse(`{"pad":"${' '.repeat(400)}","v":${'['.repeat(60)}${']'.repeat(60)}}`));
});
