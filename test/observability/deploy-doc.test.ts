import { copyFileSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import test from 'ava';
import { parseAllDocuments } from 'yaml';
import { OTHER_ENV } from '../../scripts/gen-config-doc.js';
import { readWorkerConfig } from '../../src/cloud-worker/index.js';
import { loadConfig } from '../../src/config/index.js';
import { SCHEMA } from '../../src/config/schema.js';
import { packageRoot } from '../../src/lib/package-root.js';
import { parseUpstreams } from '../../src/mcp/index.js';
import { OPERATIONS } from '../../src/openapi/index.js';
import { tempDir } from '../helpers/config.js';

// docs/deploy.md's manifests, held against the code: names, ports, paths and commands.

const root = packageRoot();
const text = readFileSync(join(root, 'docs', 'deploy.md'), 'utf8');
type K8s = { kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string> };
const manifests: K8s[] = [...text.matchAll(/```yaml\n([\s\S]*?)```/g)].flatMap((m) =>
  parseAllDocuments(m[1]!).map((d) => {
    if (d.errors.length > 0) throw new Error(d.errors[0]!.message);
    return d.toJS() as K8s;
  }),
);
const find = (kind: string, name: string) => manifests.find((m) => m.kind === kind && m.metadata.name === name);
const containerOf = (name: string) => find('Deployment', name)!.spec.template.spec.containers[0];
const configMap = () => find('ConfigMap', 'cynode-gateway')!.data!;
/** A container's environment, secrets replaced by placeholders of the right shape. */
function envOf(name: string): Record<string, string> {
  const c = containerOf(name);
  const env: Record<string, string> = {};
  if (c.envFrom) Object.assign(env, configMap());
  for (const e of c.env ?? []) {
    if (e.value !== undefined) env[e.name] = String(e.value);
    else if (e.valueFrom?.secretKeyRef)
      env[e.name] =
        e.name === 'CYNODE_MASTER_KEY'
          ? Buffer.alloc(32, 7).toString('base64')
          : e.name === 'DATABASE_URL'
            ? 'postgres://u:p@db:5432/x'
            : 'secret-value-0123456789abcdef';
    else if (e.valueFrom?.fieldRef) env[e.name] = 'pod-name-1';
  }
  return env;
}
const loads = (env: Record<string, string>) => {
  const configDir = tempDir('cynode-deploy-config-');
  copyFileSync(join(root, 'config', 'default.yaml'), join(configDir, 'default.yaml'));
  return loadConfig({ env, cwd: '/app', configDir });
};

test('the manifests parse: 3 gateway replicas, Service, PodDisruptionBudget, workers, target service, NetworkPolicies', (t) => {
  t.is(find('Deployment', 'cynode-gateway')?.spec.replicas, 3);
  t.truthy(find('Service', 'cynode-gateway'));
  t.is(find('PodDisruptionBudget', 'cynode-gateway')?.spec.minAvailable, 2);
  t.truthy(find('Deployment', 'cynode-worker'));
  t.truthy(find('Deployment', 'cynode-artifacts'));
  t.true(manifests.filter((m) => m.kind === 'NetworkPolicy').length >= 5);
});

test('every environment variable is one the code reads, and the gateway, worker and target service configs load', (t) => {
  const known = new Set([...Object.values(SCHEMA).map((s) => s.env), ...OTHER_ENV.map((e) => e.env), 'NODE_OPTIONS']);
  for (const name of ['cynode-gateway', 'cynode-worker', 'cynode-artifacts']) {
    for (const key of Object.keys(envOf(name))) t.true(known.has(key), `${name}: ${key}`);
  }
  const gateway = loads(envOf('cynode-gateway'));
  t.is(gateway.database.url, 'postgres://u:p@db:5432/x');
  t.is(gateway.server.host, '0.0.0.0');
  t.deepEqual(
    parseUpstreams(gateway.mcp.upstreams).map((u) => u.name),
    ['artifacts'],
  );
  const worker = readWorkerConfig(envOf('cynode-worker'));
  t.is(worker.orchUrl, `http://cynode-gateway.cynode.svc:${gateway.server.controlPort}`);
  t.deepEqual(worker.report.supported_providers, ['openai']);
  const artifacts = loads(envOf('cynode-artifacts'));
  t.is(artifacts.artifacts.gatewayUrl, worker.orchUrl);
  t.truthy(artifacts.auth.bundleServiceToken, 'the target service pulls the bundle with the read-only token');
  t.true(gateway.mcp.upstreams[0]!.endsWith(`:${artifacts.artifacts.port}/mcp`));
});

test('secrets come from Secrets; ports, probe paths and commands are the real ones', (t) => {
  const gw = containerOf('cynode-gateway');
  const fromSecret = (gw.env as any[])
    .filter((e) => e.valueFrom?.secretKeyRef)
    .map((e) => e.name)
    .sort();
  t.deepEqual(fromSecret, ['CYNODE_ADMIN_TOKEN', 'CYNODE_BUNDLE_SERVICE_TOKEN', 'CYNODE_MASTER_KEY', 'DATABASE_URL']);
  const secretEnvs = new Set([
    ...Object.values(SCHEMA)
      .filter((s) => 'secret' in s && s.secret)
      .map((s) => s.env),
    'CYNODE_REGISTER_PSK',
  ]);
  for (const key of Object.keys(configMap())) t.false(secretEnvs.has(key), `${key} is a secret: it belongs in a Secret`);
  for (const name of ['cynode-gateway', 'cynode-worker', 'cynode-artifacts']) {
    for (const e of containerOf(name).env as any[])
      if (secretEnvs.has(e.name)) t.truthy(e.valueFrom?.secretKeyRef, `${name}: ${e.name} comes from a Secret`);
  }

  const defaults = loads({});
  const ports = Object.fromEntries((gw.ports as { name: string; containerPort: number }[]).map((p) => [p.name, p.containerPort]));
  t.deepEqual(ports, { control: defaults.server.controlPort, mcp: defaults.server.mcpPort, egress: defaults.server.egressPort });
  t.is(containerOf('cynode-artifacts').ports[0].containerPort, defaults.artifacts.port);
  const controlGets = OPERATIONS.filter((o) => o.method === 'get' && o.roles.includes('control')).map((o) => o.path);
  for (const probe of ['startupProbe', 'livenessProbe', 'readinessProbe']) {
    t.true(controlGets.includes(gw[probe].httpGet.path), `${probe} ${gw[probe].httpGet.path} is a control-plane route`);
    t.is(gw[probe].httpGet.port, 'control');
  }
  t.is(gw.readinessProbe.httpGet.path, '/readyz');
  t.is(gw.livenessProbe.httpGet.path, '/healthz');

  const cli = readFileSync(join(root, 'src', 'cli', 'main.ts'), 'utf8');
  for (const name of ['cynode-gateway', 'cynode-worker', 'cynode-artifacts']) {
    const c = containerOf(name);
    t.true(cli.includes(`case '${c.args[0]}':`), `${c.args[0]} is a CLI command`);
    const pod = find('Deployment', name)!.spec.template.spec;
    t.true(pod.securityContext.runAsNonRoot);
    t.not(pod.securityContext.runAsUser, 0);
    t.true(c.securityContext.readOnlyRootFilesystem);
    t.false(c.securityContext.allowPrivilegeEscalation);
    t.truthy(c.resources.limits.memory);
  }
});

test('network policies: default deny; workers reach only the gateway; the gateway only PostgreSQL, upstreams and HTTPS', (t) => {
  const deny = find('NetworkPolicy', 'default-deny')!.spec;
  t.deepEqual(deny.podSelector, {});
  t.deepEqual(deny.policyTypes, ['Ingress', 'Egress']);
  const workers = find('NetworkPolicy', 'workers-reach-only-the-gateway')!.spec;
  t.deepEqual(
    workers.egress.map((r: any) => r.to[0].podSelector.matchLabels['app.kubernetes.io/name']),
    ['cynode-gateway'],
  );
  t.deepEqual(
    workers.egress[0].ports.map((p: any) => p.port),
    [12082, 12083],
  );
  const gateway = find('NetworkPolicy', 'gateway')!.spec;
  const targets = gateway.egress.map((r: any) => r.to[0].podSelector?.matchLabels['app.kubernetes.io/name'] ?? r.to[0].ipBlock.cidr);
  t.deepEqual(targets, ['postgresql', 'cynode-artifacts', '0.0.0.0/0']);
  t.deepEqual(
    gateway.egress.map((r: any) => r.ports[0].port),
    [5432, 12085, 443],
  );
});
