import test from 'ava';
import { isTaskId, isUuid, TASK_ID, TASK_ID_MAX } from '../../src/lib/ids.js';

test('isUuid accepts canonical UUIDs in either case', (t) => {
  t.true(isUuid('123e4567-e89b-12d3-a456-426614174000'));
  t.true(isUuid('123E4567-E89B-12D3-A456-426614174000'));
  t.true(isUuid('00000000-0000-0000-0000-000000000000'));
});

test('isUuid refuses malformed UUIDs and non-strings', (t) => {
  for (const value of [
    '',
    '123e4567e89b12d3a456426614174000', // no dashes
    '{123e4567-e89b-12d3-a456-426614174000}', // braces
    '123e4567-e89b-12d3-a456-42661417400', // one digit short
    '123e4567-e89b-12d3-a456-4266141740000', // one digit long
    '123e4567-e89b-12d3-a456-42661417400g', // not hex
    ' 123e4567-e89b-12d3-a456-426614174000', // padded
    '123e4567-e89b-12d3-a456-426614174000\n',
    "1' OR '1'='1",
    123,
    null,
    undefined,
    { id: '123e4567-e89b-12d3-a456-426614174000' },
  ]) {
    t.false(isUuid(value), JSON.stringify(value) ?? String(value));
  }
});

test('isTaskId accepts 1 to TASK_ID_MAX letters, digits and _.:@/-, starting with a letter or digit', (t) => {
  t.is(TASK_ID_MAX, 256);
  for (const value of ['a', '7', 'task-1', 'proj/alpha:run_2@eu.west', 'A'.repeat(TASK_ID_MAX)]) t.true(isTaskId(value), value);
});

test('isTaskId refuses ids over TASK_ID_MAX, bad first characters, other characters and non-strings', (t) => {
  for (const value of [
    '',
    'A'.repeat(TASK_ID_MAX + 1),
    '-task',
    '.task',
    '/etc/passwd',
    'task id',
    'task\n',
    'täsk',
    'task;drop',
    'task%2F',
    42,
    null,
    undefined,
    ['task'],
  ]) {
    t.false(isTaskId(value), JSON.stringify(value)?.slice(0, 40) ?? String(value));
  }
});

test('TASK_ID is the same rule as isTaskId, for schemas that need the pattern', (t) => {
  t.true(TASK_ID.test('task-1'));
  t.false(TASK_ID.test('x'.repeat(TASK_ID_MAX + 1)));
  t.false(TASK_ID.test('_task'));
});
