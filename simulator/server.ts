import { setTimeout as sleep } from "node:timers/promises";
import type { HttpBindings } from "@hono/node-server";
import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import Stripe from "stripe";
import { retrieveCharge } from "./charges.js";
import { registerControlRoutes } from "./control.js";
import {
  apiError,
  errorResponseText,
  injectedFault,
  invalidApiKey,
  missingApiKey,
  resourceMissing,
  StripeSimError,
  unrecognizedUrl,
} from "./errors.js";
import { FaultInjector } from "./faults.js";
import { executeIdempotently, KeyedLock } from "./idempotency.js";
import { newId, unixNow } from "./ids.js";
import type { OperationContext, PostOperation } from "./operation.js";
import { type Params, parseParams, rejectUnknownParams } from "./params.js";
import { createPaymentIntent, retrievePaymentIntent } from "./payment-intents.js";
import { createRefund, retrieveRefund } from "./refunds.js";
import { type LoggedRequest, RequestLog } from "./request-log.js";
import type { SimStore } from "./state.js";
import type { WebhookDispatcher } from "./webhooks.js";

/** How many recent API requests `GET /_sim/requests` can show. */
const REQUEST_LOG_CAPACITY = 1000;

/** Options of {@link createSimulatorApp}. */
export interface SimulatorAppOptions {
  store: SimStore;
  webhooks: WebhookDispatcher;
  /** Receives unexpected errors (simulator bugs). Default: `console.error`. */
  logError?: (error: unknown) => void;
}

/** Hono environment of the simulator: Node bindings plus per-request variables. */
export type SimulatorEnv = {
  Bindings: HttpBindings;
  Variables: { requestId: string; logEntry: LoggedRequest; loseResponse: boolean };
};

type SimContext = Context<SimulatorEnv>;

const JSON_HEADERS = { "content-type": "application/json" } as const;

function bearerKey(authorization: string | undefined): string | null {
  if (authorization === undefined) {
    return null;
  }
  const [scheme, credentials] = authorization.trim().split(/\s+/, 2);
  if (credentials === undefined) {
    return null;
  }
  if (scheme?.toLowerCase() === "bearer") {
    return credentials;
  }
  if (scheme?.toLowerCase() === "basic") {
    // `curl -u sk_test_...:` sends the key as the Basic user name, which Stripe accepts.
    return Buffer.from(credentials, "base64").toString("utf8").split(":")[0] ?? null;
  }
  return null;
}

function queryParams(c: SimContext): Params {
  return parseParams(new URL(c.req.url).search.slice(1));
}

/**
 * Builds the simulator's Hono app: the Stripe API subset under `/v1` and the control API under
 * `/_sim`. No I/O happens here; the caller owns the store, the dispatcher and the server.
 *
 * Every `/v1` request gets a `Request-Id`, is authenticated (any `sk_test_` key), then passes
 * the fault injector before reaching its route. POSTs go through the idempotency layer and
 * answer only once their effects are persisted.
 *
 * @example
 * const app = createSimulatorApp({ store, webhooks });
 * serve({ fetch: app.fetch, port: 12111, hostname: "127.0.0.1" });
 */
export function createSimulatorApp(options: SimulatorAppOptions): Hono<SimulatorEnv> {
  const { store, webhooks } = options;
  const logError = options.logError ?? ((error: unknown) => console.error(error));
  const faults = new FaultInjector();
  const requestLog = new RequestLog(REQUEST_LOG_CAPACITY);
  const locks = new KeyedLock();
  const app = new Hono<SimulatorEnv>();

  app.use("/v1/*", async function trackStripeRequest(c, next) {
    const requestId = newId("req");
    const isPost = c.req.method === "POST";
    const idempotencyKey = isPost ? (c.req.header("idempotency-key") ?? null) : null;
    const entry: LoggedRequest = {
      id: requestId,
      method: c.req.method,
      path: c.req.path,
      status: null,
      idempotency_key: idempotencyKey,
      idempotent_replayed: false,
      fault: null,
      received_at: Date.now(),
    };
    store.state.counters.api_requests += 1;
    requestLog.add(entry);
    c.set("requestId", requestId);
    c.set("logEntry", entry);
    c.set("loseResponse", false);
    c.header("Request-Id", requestId);
    c.header("Stripe-Version", c.req.header("stripe-version") ?? Stripe.API_VERSION);
    if (idempotencyKey !== null) {
      c.header("Idempotency-Key", idempotencyKey);
    }
    await next();
    entry.status = c.res.status;
    entry.idempotent_replayed = c.res.headers.get("idempotent-replayed") === "true";
    if (c.get("loseResponse")) {
      // The effect is done and persisted; the client just never hears about it.
      c.env.incoming.socket.destroy();
    }
  });

  app.use("/v1/*", async function authenticate(c, next) {
    const key = bearerKey(c.req.header("authorization"));
    if (key === null || key === "") {
      throw missingApiKey();
    }
    if (!key.startsWith("sk_test_")) {
      throw invalidApiKey(key);
    }
    await next();
  });

  app.use("/v1/*", async function injectFaults(c, next) {
    const decision = faults.decide(c.req.method, c.req.path);
    if (decision.latencyMs > 0) {
      await sleep(decision.latencyMs);
    }
    if (decision.error500) {
      c.get("logEntry").fault = "error_500";
      throw injectedFault();
    }
    if (decision.loseResponse) {
      c.get("logEntry").fault = "lose_response";
      c.set("loseResponse", true);
    }
    await next();
  });

  async function handlePost<Input>(c: SimContext, operation: PostOperation<Input>) {
    const params = parseParams(await c.req.text());
    const requestId = c.get("requestId");
    const idempotencyKey = c.req.header("idempotency-key") ?? null;
    const now = unixNow();
    const context: OperationContext = {
      store,
      requestId,
      idempotencyKey,
      now,
      emit: (payload) => {
        webhooks.publish(payload, { id: requestId, idempotency_key: idempotencyKey }, now);
      },
    };
    const outcome = await executeIdempotently(
      store,
      locks,
      { path: c.req.path, params, idempotencyKey },
      operation,
      context,
    );
    const replayHeaders: Record<string, string> =
      outcome.replayOf === null
        ? {}
        : { "Idempotent-Replayed": "true", "Original-Request": outcome.replayOf };
    return c.body(outcome.body, outcome.status as ContentfulStatusCode, {
      ...JSON_HEADERS,
      ...replayHeaders,
    });
  }

  function handleGet(c: SimContext, retrieve: (query: Params) => unknown) {
    return c.body(JSON.stringify(retrieve(queryParams(c)), null, 2), 200, JSON_HEADERS);
  }

  app.post("/v1/payment_intents", (c) => handlePost(c, createPaymentIntent));
  app.get("/v1/payment_intents/:id", (c) =>
    handleGet(c, (query) => retrievePaymentIntent(store, c.req.param("id"), query)),
  );
  app.post("/v1/refunds", (c) => handlePost(c, createRefund));
  app.get("/v1/refunds/:id", (c) =>
    handleGet(c, (query) => retrieveRefund(store, c.req.param("id"), query)),
  );
  app.get("/v1/charges/:id", (c) =>
    handleGet(c, (query) => retrieveCharge(store, c.req.param("id"), query)),
  );
  app.get("/v1/events/:id", (c) =>
    handleGet(c, (query) => {
      rejectUnknownParams(query, []);
      const id = c.req.param("id");
      const event = store.state.events.get(id);
      if (event === undefined) {
        throw resourceMissing(404, "event", id, "id");
      }
      return event;
    }),
  );

  registerControlRoutes(app, { store, webhooks, faults, requestLog });

  app.notFound((c) => {
    if (c.req.path.startsWith("/v1/")) {
      const error = unrecognizedUrl(c.req.method, c.req.path);
      return c.body(errorResponseText(error), 404, JSON_HEADERS);
    }
    return c.json({ error: { message: `No route for ${c.req.method} ${c.req.path}` } }, 404);
  });

  app.onError((error, c) => {
    if (!(error instanceof StripeSimError)) {
      logError(error);
    }
    const stripeError = error instanceof StripeSimError ? error : apiError();
    const headers: Record<string, string> =
      stripeError.status === 401 ? { "WWW-Authenticate": 'Bearer realm="Stripe"' } : {};
    return c.body(errorResponseText(stripeError), stripeError.status as ContentfulStatusCode, {
      ...JSON_HEADERS,
      ...headers,
    });
  });

  return app;
}
