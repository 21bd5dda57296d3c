# syntax=docker/dockerfile:1
# Multi-stage:
#   build   (Node)  npm ci and compile the TypeScript;
#   opa     (Go)    build the pinned OPA CLI from source with its Wasm engine, exactly as
#                   scripts/install-tools.sh does, and build the signed policy bundle with it
#                   through the gateway's own `policy build` (entrypoints, builtins gate, signature);
#   runtime (Node, slim) only what `serve` needs, as a non-root user, with a health check.
# Build: docker build -t cynode-gateway .    Run: see docs/deploy.md.

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY console ./console
COPY scripts/build-console.mjs ./scripts/build-console.mjs
RUN npm run build && npm prune --omit=dev

FROM golang:1.26-bookworm AS opa
# Keep in step with OPA_VERSION in scripts/install-tools.sh (a test checks they match).
ARG OPA_VERSION=v1.18.2
RUN CGO_ENABLED=1 GOBIN=/out GOFLAGS=-trimpath go install -tags opa_wasm github.com/open-policy-agent/opa@${OPA_VERSION} \
 && /out/opa version
# The bundle: `policy build` runs the pinned `opa build -b -t wasm` over policies/ with the
# capabilities gate, and signs with a key made for this build; only its public half reaches
# the runtime image. Production deployments mount their own signed bundle and keys file.
RUN apt-get update && apt-get install -y --no-install-recommends libstdc++6 && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/node /usr/local/bin/node
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY policies ./policies
COPY config ./config
RUN CYNODE_OPA_BIN=/out/opa node dist/src/cli/main.js policy build --out build/bundle.tar.gz

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CYNODE_HOST=0.0.0.0 \
    CYNODE_CONTROL_PORT=12082 \
    CYNODE_MCP_PORT=12083 \
    CYNODE_EGRESS_PORT=12084 \
    CYNODE_DATA_DIR=/var/lib/cynode/data \
    CYNODE_ADMIN_TOKEN_FILE=/var/lib/cynode/admin-token \
    CYNODE_MASTER_KEY_FILE=/var/lib/cynode/master-key \
    CYNODE_BUNDLE=/app/build/bundle.tar.gz \
    CYNODE_BUNDLE_VERIFICATION_KEYS_FILE=/app/config/bundle-keys.yaml \
    CYNODE_BUNDLE_SIGNING_KEY_FILE=
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY config ./config
COPY --from=opa /app/build/bundle.tar.gz ./build/bundle.tar.gz
COPY --from=opa /app/.cynode/bundle-keys.yaml ./config/bundle-keys.yaml
# uid 1000 is the image's `node` user; numeric so Kubernetes' runAsNonRoot can verify it.
RUN mkdir -p /var/lib/cynode && chown 1000:1000 /var/lib/cynode
USER 1000:1000
EXPOSE 12082 12083 12084
# Liveness of the control plane (the role every default deployment runs); role-only
# deployments use their own port's /healthz in their orchestrator's probes (docs/deploy.md).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.CYNODE_CONTROL_PORT||12082)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
