import { Counter, Gauge, type Registry } from 'prom-client';

/** What the gateway reports of its bundles: the active one, when it was activated, its age, every load attempt. */
export interface BundleMetrics {
  bundleInfo: Gauge<'bundle' | 'revision' | 'digest'>;
  bundleActivatedSeconds: Gauge<'bundle'>;
  bundleAgeSeconds: Gauge<'bundle'>;
  bundleLoads: Counter<'bundle' | 'outcome' | 'code'>;
}

export function createBundleMetrics(registry: Registry): BundleMetrics {
  const bundleActivatedSeconds = new Gauge({
    name: 'cynode_bundle_activated_timestamp_seconds',
    help: 'When the active bundle was activated (Unix seconds); age = now - this.',
    labelNames: ['bundle'],
    registers: [registry],
  });
  return {
    bundleInfo: new Gauge({
      name: 'cynode_bundle_info',
      help: 'The active bundle (value 1), labelled with its revision and digest.',
      labelNames: ['bundle', 'revision', 'digest'],
      registers: [registry],
    }),
    bundleActivatedSeconds,
    bundleAgeSeconds: new Gauge({
      name: 'cynode_bundle_age_seconds',
      help: 'Seconds since the active bundle was activated, computed at scrape time.',
      labelNames: ['bundle'],
      registers: [registry],
      async collect() {
        const now = Date.now() / 1000;
        this.reset();
        for (const v of (await bundleActivatedSeconds.get()).values) {
          this.set({ bundle: String(v.labels.bundle) }, Math.max(0, now - v.value));
        }
      },
    }),
    bundleLoads: new Counter({
      name: 'cynode_bundle_loads_total',
      help: 'Bundle activation attempts by outcome (activated, refused) and refusal code.',
      labelNames: ['bundle', 'outcome', 'code'],
      registers: [registry],
    }),
  };
}
