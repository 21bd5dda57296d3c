import test from 'ava';
import { admissionPlan, estimatedTokens, limitsOf, refusalError } from '../../src/egress/admission.js';
import { refusal } from '../../src/egress/answer.js';

const who = { subject: { kind: 'worker', id: 'node-1' }, taskId: 'task-1', userId: 'alice', credentialId: 'cred-1' };

test('the token estimate is a quarter of the input characters, rounded up, plus the output cap', (t) => {
  t.is(estimatedTokens(0, 0), 0);
  t.is(estimatedTokens(1, 0), 1);
  t.is(estimatedTokens(8, 100), 102);
  t.is(estimatedTokens(9, 100), 103);
});

test('a decision without limits has none; one with limits gives them as they are', (t) => {
  t.deepEqual(limitsOf({ allow: true, reasons: [] }), {});
  const limits = { subject: { rpm: 5 }, credential: { tpm: 1000 } };
  t.deepEqual(limitsOf({ allow: true, reasons: [], limits }), limits);
});

test('every call holds the task budget (required), the user and subject budgets (optional)', (t) => {
  const plan = admissionPlan(who, {}, 50);
  t.deepEqual(plan.holds, [
    { scope: 'task', subject_id: 'task-1', required: true },
    { scope: 'user', subject_id: 'alice', required: false },
    { scope: 'subject', subject_id: 'node-1', required: false },
  ]);
  t.deepEqual(plan.takes, [], 'no limits, nothing taken');
});

test('a call without a user holds no user budget', (t) => {
  const plan = admissionPlan({ ...who, userId: null }, {}, 50);
  t.deepEqual(
    plan.holds.map((h) => h.scope),
    ['task', 'subject'],
  );
});

test('rate limits take one request and the estimated tokens, per subject and per credential', (t) => {
  const plan = admissionPlan(who, { subject: { rpm: 10, tpm: 2000 }, credential: { rpm: 60, tpm: 90_000 } }, 123);
  t.deepEqual(plan.takes, [
    { key: 'rpm:subject:worker:node-1', limit: 10, amount: 1, tokens: false },
    { key: 'tpm:subject:worker:node-1', limit: 2000, amount: 123, tokens: true },
    { key: 'rpm:credential:cred-1', limit: 60, amount: 1, tokens: false },
    { key: 'tpm:credential:cred-1', limit: 90_000, amount: 123, tokens: true },
  ]);
});

test('a limit that is not a finite number is not taken from', (t) => {
  const limits = { subject: { rpm: Infinity, tpm: Number.NaN }, credential: { rpm: '5' as unknown as number, tpm: 0 } };
  const plan = admissionPlan(who, limits, 10);
  t.deepEqual(
    plan.takes,
    [{ key: 'tpm:credential:cred-1', limit: 0, amount: 10, tokens: true }],
    'a zero limit still applies: it refuses everything',
  );
});

test('an admitted call has no refusal', (t) => {
  t.is(refusalError(undefined, 1), undefined);
});

test('a rate limit refusal is rate_limited (429) with the window to wait, rounded up to seconds', (t) => {
  const err = refusalError({ reason: 'rate_limited', key: 'rpm:subject:worker:node-1:29000000', retryAfterMs: 1200 }, 0.5)!;
  t.is(err.code, 'rate_limited');
  t.is(err.status, 429);
  t.deepEqual(err.details, { reasons: ['rate_limited'], retry_after_s: 2 });
  t.is(err.message, 'rate limit rpm:subject:worker:node-1 reached for this window', 'the window suffix is not shown');
  const reply = refusal('req-1', err, 'dec-1');
  t.is(reply.httpStatus, 429);
  t.is(reply.retryAfterS, 2);
  t.is(reply.body.status, 'denied');
  t.deepEqual(reply.body.error, { code: 'rate_limited', message: err.message, reasons: ['rate_limited'], details: { retry_after_s: 2 } });
  t.is(reply.body.decision_id, 'dec-1');
  t.is(reply.body.cost_usd, 0);
});

test('a budget that cannot cover the worst case is budget_exceeded (402) with what remains', (t) => {
  const err = refusalError({ reason: 'budget_exceeded', scope: 'user', remainingUsd: 0.25 }, 0.75)!;
  t.is(err.code, 'budget_exceeded');
  t.is(err.status, 402);
  t.deepEqual(err.details, { reasons: ['budget_exceeded'], remaining_usd: 0.25 });
  t.regex(err.message, /user budget .* \$0\.75/);
  const reply = refusal('req-2', err, null);
  t.is(reply.httpStatus, 402);
  t.is(reply.retryAfterS, undefined);
  t.is(reply.body.status, 'denied');
  t.deepEqual(reply.body.error?.details, { remaining_usd: 0.25 });
});

test('a missing required budget is budget_missing (402)', (t) => {
  const err = refusalError({ reason: 'budget_missing', scope: 'task' }, 1)!;
  t.is(err.code, 'budget_missing');
  t.is(err.status, 402);
  t.deepEqual(err.details, { reasons: ['budget_missing'] });
  t.is(refusal('req-3', err, null).body.error?.details, undefined, 'no details beyond the reasons');
});

test('a call admitted once already is forward_token_replayed, an error rather than a denial', (t) => {
  const err = refusalError({ reason: 'replayed' }, 1)!;
  t.is(err.code, 'forward_token_replayed');
  t.is(err.status, 401);
  const reply = refusal('req-4', err, 'dec-4');
  t.is(reply.body.status, 'error');
  t.is(reply.body.error?.reasons, undefined);
});
