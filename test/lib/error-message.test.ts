import test from 'ava';
import { errorMessage } from '../../src/lib/error-message.js';

test("an Error's message, or the thrown value as text", (t) => {
  t.is(errorMessage(new Error('boom')), 'boom');
  t.is(errorMessage(new TypeError('bad type')), 'bad type');
  t.is(errorMessage({ message: 'plain object' }), 'plain object');
  t.is(errorMessage('a string'), 'a string');
  t.is(errorMessage(42), '42');
  t.is(errorMessage(undefined), 'undefined');
  t.is(errorMessage(null), 'null');
});
