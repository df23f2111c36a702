import type { Server } from "node:http";
import { serve } from "@hono/node-server";
import { ConfigError, loadConfig, type SimulatorConfig } from "./config.js";
import { createSimulatorApp } from "./server.js";
import { SimStore } from "./state.js";
import { WebhookDispatcher } from "./webhooks.js";

/**
 * How long shutdown waits for requests in flight (one may be sleeping in an injected latency
 * fault) before cutting their connections. Short, because whoever sent SIGTERM is waiting,
 * and long enough for any real request, which completes in milliseconds.
 */
const SHUTDOWN_GRACE_MS = 3_000;

function fail(message: string): never {
  console.error(message);
  process.exit(1);
}

function displayHost(host: string): string {
  return host.includes(":") ? `[${host}]` : host;
}

async function main(): Promise<void> {
  let config: SimulatorConfig;
  try {
    config = loadConfig(process.env);
  } catch (error) {
    fail(error instanceof ConfigError ? error.message : String(error));
  }

  let store: SimStore;
  try {
    store = await SimStore.open(config.stateFile);
  } catch (error) {
    fail(`stripe simulator could not load its state: ${(error as Error).message}`);
  }

  const webhooks = new WebhookDispatcher({
    store,
    url: config.webhookUrl,
    secret: config.webhookSecret,
    maxAttempts: config.webhookMaxAttempts,
    retryBaseMs: config.webhookRetryBaseMs,
    retryMaxMs: config.webhookRetryMaxMs,
    timeoutMs: config.webhookTimeoutMs,
    log: (line) => console.error(line),
  });
  const app = createSimulatorApp({ store, webhooks });

  // serve() builds a node:http server unless told otherwise.
  const server = serve({ fetch: app.fetch, hostname: config.host, port: config.port }, (info) => {
    webhooks.start();
    console.log(`stripe simulator listening on http://${displayHost(config.host)}:${info.port}`);
  }) as Server;
  server.on("error", (error) => {
    fail(`stripe simulator could not listen on ${config.host}:${config.port}: ${error.message}`);
  });

  let stopping = false;
  async function shutdown(signal: NodeJS.Signals): Promise<void> {
    if (stopping) {
      return;
    }
    stopping = true;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeIdleConnections();
    const forceClose = setTimeout(() => server.closeAllConnections(), SHUTDOWN_GRACE_MS);
    await closed;
    clearTimeout(forceClose);
    await webhooks.stop();
    try {
      await store.persist();
    } catch (error) {
      fail(`stripe simulator could not save its state on ${signal}: ${(error as Error).message}`);
    }
    console.log(`stripe simulator stopped (${signal})`);
    process.exit(0);
  }
  process.on("SIGTERM", (signal) => void shutdown(signal));
  // Started by the app with an IPC channel: the channel closes when the app exits, however it
  // exits (even SIGKILL), and a simulator must not outlive it holding the state file.
  if (process.send) process.on("disconnect", () => void shutdown("SIGTERM"));
  process.on("SIGINT", (signal) => void shutdown(signal));
}

await main();
