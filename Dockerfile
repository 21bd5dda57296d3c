# syntax=docker/dockerfile:1
# Multi-stage: Go builds the pinned OPA CLI; Node builds the TypeScript and the policy
# bundle with it; the runtime stage carries only what `serve` needs, as a non-root user.

FROM golang:1.26-bookworm AS opa
ARG OPA_VERSION=v1.18.2
# With its Wasm engine (cgo + opa_wasm), as scripts/install-tools.sh builds it.
RUN CGO_ENABLED=1 GOBIN=/out go install -trimpath -tags opa_wasm github.com/open-policy-agent/opa@${OPA_VERSION}

FROM node:20-bookworm AS build
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY migrations ./migrations
COPY policies ./policies
COPY config ./config
COPY --from=opa /out/opa /usr/local/bin/opa
# The default bundle is signed with a key made for this build; only its public half reaches
# the runtime image. Production deployments mount their own signed bundle and keys file.
RUN npm run build \
 && CYNODE_OPA_BIN=/usr/local/bin/opa node dist/src/cli/main.js policy build --out build/bundle.tar.gz \
 && npm prune --omit=dev

FROM node:20-bookworm-slim AS runtime
ENV NODE_ENV=production \
    CYNODE_HOST=0.0.0.0 \
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
COPY --from=build /app/config ./config
COPY --from=build /app/build/bundle.tar.gz ./build/bundle.tar.gz
COPY --from=build /app/.cynode/bundle-keys.yaml ./config/bundle-keys.yaml
RUN mkdir -p /var/lib/cynode && chown node:node /var/lib/cynode
USER node
EXPOSE 12082 12083 12084
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD node -e "fetch('http://127.0.0.1:12082/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["serve"]
