/**
 * The loopback fake OpenAI/Anthropic server of the tests, as its own process, so a benchmark
 * measures the paths in front of it and not the provider sharing their event loop. Prints
 * its URL on the first line of stdout.
 */
import { startFakeProvider } from '../test/helpers/fake-providers.js';

const fake = await startFakeProvider();
// The benchmark sends thousands of requests: keep no history.
setInterval(() => fake.received.splice(0), 1000).unref();
process.stdout.write(`${fake.url}\n`);
process.on('SIGTERM', () => void fake.close().then(() => process.exit(0)));
