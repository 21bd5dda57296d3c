import test from 'ava';
import { isGatewayError } from '../../src/errors/index.js';
import { classify, MAX_LIMIT, parseLimit, parseSince } from '../../src/replay/index.js';

const NOW = new Date('2026-12-01T12:00:00.000Z');

test('since takes a duration back from now or an ISO 8601 time', (t) => {
  t.is(parseSince('24h', NOW).toISOString(), '2026-11-30T12:00:00.000Z');
  t.is(parseSince('30m', NOW).toISOString(), '2026-12-01T11:30:00.000Z');
  t.is(parseSince('90s', NOW).toISOString(), '2026-12-01T11:58:30.000Z');
  t.is(parseSince('7d', NOW).toISOString(), '2026-11-24T12:00:00.000Z');
  t.is(parseSince('2026-11-30T08:00:00Z', NOW).toISOString(), '2026-11-30T08:00:00.000Z');
  t.is(parseSince('2026-11-30', NOW).toISOString(), '2026-11-30T00:00:00.000Z');
  for (const bad of ['yesterday', '24', 'h', '-1h', '2026-13-45', '1e3s', '']) {
    const err = t.throws(() => parseSince(bad, NOW));
    t.true(isGatewayError(err) && err.code === 'bad_request', bad);
  }
});

test('limit is a positive integer up to the maximum', (t) => {
  t.is(parseLimit(undefined), 100_000);
  t.is(parseLimit('1'), 1);
  t.is(parseLimit(String(MAX_LIMIT)), MAX_LIMIT);
  for (const bad of ['0', '-1', '1.5', 'ten', String(MAX_LIMIT + 1), '']) t.throws(() => parseLimit(bad), undefined, bad);
});

test('a flip of allow wins over reasons; reasons compare as sets', (t) => {
  t.is(classify({ allow: true, reasons: [] }, { allow: false, reasons: [] }), 'allow_to_deny');
  t.is(classify({ allow: false, reasons: ['a'] }, { allow: true, reasons: ['a'] }), 'deny_to_allow');
  t.is(classify({ allow: false, reasons: ['a', 'b'] }, { allow: false, reasons: ['b', 'a', 'a'] }), 'unchanged');
  t.is(classify({ allow: false, reasons: ['a'] }, { allow: false, reasons: ['a', 'b'] }), 'reasons_changed');
});
