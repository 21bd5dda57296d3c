import test from 'ava';
import { ConfigError } from '../../src/config/index.js';
import { testConfig } from '../helpers/config.js';

test('export and status keys are off by default and set by their env overrides', (t) => {
  const defaults = testConfig();
  t.is(defaults.decisionLog.export.url, null);
  t.is(defaults.decisionLog.export.uploadSizeLimitBytes, 32_768);
  t.is(defaults.status.url, null);
  const set = testConfig({
    CYNODE_DECISION_LOG_EXPORT_URL: 'http://127.0.0.1:9/logs',
    CYNODE_DECISION_LOG_EXPORT_TOKEN: 'export-token-0123456789',
    CYNODE_DECISION_LOG_EXPORT_BUFFER_SIZE_LIMIT_EVENTS: '50',
    CYNODE_STATUS_URL: 'http://127.0.0.1:9/status',
    CYNODE_STATUS_TOKEN: 'status-token-0123456789',
    CYNODE_STATUS_PERIOD_MS: '1000',
  });
  t.is(set.decisionLog.export.url, 'http://127.0.0.1:9/logs');
  t.is(set.decisionLog.export.token, 'export-token-0123456789');
  t.is(set.decisionLog.export.bufferSizeLimitEvents, 50);
  t.is(set.status.url, 'http://127.0.0.1:9/status');
  t.is(set.status.token, 'status-token-0123456789');
  t.is(set.status.periodMs, 1000);
});

test('a bad export URL and crossed delays stop the load, naming the keys', (t) => {
  t.throws(() => testConfig({ CYNODE_DECISION_LOG_EXPORT_URL: 'ftp://collector/logs' }), {
    instanceOf: ConfigError,
    message: /decisionLog\.export\.url/,
  });
  t.throws(() => testConfig({ CYNODE_DECISION_LOG_EXPORT_MIN_DELAY_MS: '5000', CYNODE_DECISION_LOG_EXPORT_MAX_DELAY_MS: '1000' }), {
    instanceOf: ConfigError,
    message: /'decisionLog\.export\.maxDelayMs' \(1000\) must not be below 'decisionLog\.export\.minDelayMs' \(5000\)/,
  });
});
