import type { Registry } from 'prom-client';
import type { Config } from './config/index.js';
import type { DecisionLog, DecisionService } from './decisions/index.js';
import type { AuditLog, EgressService, Ledger } from './egress/index.js';
import type { JobService, LeaseService } from './jobs/index.js';
import type { KeyStore } from './keys/index.js';
import type { Logger } from './logging/index.js';
import type { ToolAudit } from './mcp/index.js';
import type { PolicyEngine } from './policy/index.js';
import type { PreferencesService } from './preferences/index.js';
import type { RegisteredRoute } from './server/app.js';
import type { Listening } from './server/listen.js';
import type { Role } from './server/roles.js';
import type { SettingsService } from './settings/index.js';
import type { Database } from './storage/index.js';
import type { CredentialStore } from './vault/index.js';
import type { PskStore, WorkerService } from './workers/index.js';

/** A running gateway: its listeners and parts, and the one way to stop it. */
export interface Gateway {
  listening: Listening[];
  db: Database;
  policy: PolicyEngine;
  decisions: DecisionService;
  decisionLog: DecisionLog;
  settings: SettingsService;
  keys: KeyStore;
  preferences: PreferencesService;
  psks: PskStore;
  workers: WorkerService;
  jobs: JobService;
  leases: LeaseService;
  credentials: CredentialStore;
  ledger: Ledger;
  audit: AuditLog;
  toolAudit: ToolAudit;
  egress: EgressService;
  /** The Prometheus registry `/metrics` serves. */
  metrics: Registry;
  /** The routes each running role serves (what /openapi.json describes). */
  routes: Partial<Record<Role, RegisteredRoute[]>>;
  /** Stops accepting, drains in-flight requests (up to the shutdown grace), then stops every part in reverse start order. */
  stop(): Promise<void>;
}

/** What the composition root needs: validated config, the root logger and the roles to run. */
export interface GatewayOptions {
  config: Config;
  logger: Logger;
  roles: readonly Role[];
}
