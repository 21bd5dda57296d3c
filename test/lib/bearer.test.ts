import test from 'ava';
import { bearerToken } from '../../src/lib/bearer.js';

test('the token of a Bearer header, whatever the scheme case and spacing', (t) => {
  t.is(bearerToken('Bearer abc.def.ghi'), 'abc.def.ghi');
  t.is(bearerToken('bearer abc'), 'abc');
  t.is(bearerToken('BEARER abc'), 'abc');
  t.is(bearerToken('Bearer    abc  '), 'abc', 'extra spaces around the token');
  t.is(bearerToken('Bearer\tabc'), 'abc');
});

test('no token for an absent header or any other shape', (t) => {
  for (const header of [
    undefined,
    '',
    'Bearer',
    'Bearer ',
    'Basic dXNlcjpwYXNz',
    'abc',
    'Bearer a b',
    'Bearerabc',
    ' Bearer abc',
    'Token abc',
  ]) {
    t.is(bearerToken(header), undefined, JSON.stringify(header));
  }
});
