# The API server (and, with another command, the Stripe simulator) from source: the app runs
# TypeScript through tsx, a runtime dependency, so there is no build step to carry over; the
# first stage only installs the production dependencies, keeping npm's cache out of the image.

FROM node:20-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
COPY patches ./patches
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-bookworm-slim
ENV NODE_ENV=production \
    HOST=0.0.0.0 \
    PORT=3000
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json tsconfig.json ./
COPY drizzle ./drizzle
COPY src ./src
COPY simulator ./simulator
# The only writable place: the embedded database and the simulator's state live under .data/.
RUN mkdir .data && chown node:node .data
USER node
EXPOSE 3000
# Ready means the database answers; a process that lost it gets no traffic and, in compose,
# shows as unhealthy. Node's fetch, since the slim image has neither curl nor wget.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.PORT}/readyz`).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# node itself, not npm, receives SIGTERM and drains requests (graceful shutdown in main.ts).
CMD ["node", "--import", "tsx", "src/main.ts"]
