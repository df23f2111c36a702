import type { Context, Hono } from "hono";
import type Stripe from "stripe";
import { z } from "zod";
import { type FaultInjector, type FaultRule, FaultRuleSchema } from "./faults.js";
import { type Params, parseParams } from "./params.js";
import type { LoggedRequest, RequestLog } from "./request-log.js";
import type { SimulatorEnv } from "./server.js";
import type { SimState, SimStore, WebhookDelivery } from "./state.js";
import type { WebhookDispatcher, WebhookSettings } from "./webhooks.js";

/** Counters returned by `GET /_sim/stats`. Amounts are summed across currencies. */
export interface SimulatorStats {
  payment_intents: number;
  /** Successful charges only. */
  charges: number;
  /** Failed (declined) charges. */
  declines: number;
  refunds: number;
  amount_captured: number;
  amount_refunded: number;
  idempotent_replays: number;
  /** Every `/v1` request, including rejected, faulted and replayed ones. */
  api_requests: number;
  /** HTTP POSTs made to the webhook URL, retries and duplicates included. */
  webhook_attempts: number;
  webhook_deliveries_succeeded: number;
  webhook_deliveries_failed: number;
  webhook_deliveries_pending: number;
}

/** An event as `GET /_sim/events` lists it: the Stripe event plus its deliveries. */
export type SimulatorEventView = Stripe.Event & { deliveries: WebhookDelivery[] };

/** A `{ object: "list", data }` page, the shape of every control listing. */
export interface SimulatorList<T> {
  object: "list";
  data: T[];
}

/** What the control routes operate on. */
export interface ControlDeps {
  store: SimStore;
  webhooks: WebhookDispatcher;
  faults: FaultInjector;
  requestLog: RequestLog;
}

const WebhookSettingsPatchSchema = z.strictObject({
  url: z
    .url({ protocol: /^https?$/ })
    .nullable()
    .optional(),
  duplicates: z.int().min(1).max(100).optional(),
  delay_ms: z.int().min(0).max(600_000).optional(),
});

/** Computes `GET /_sim/stats` from the stored objects, so it is exact after a restart too. */
export function computeStats(state: SimState): SimulatorStats {
  let charges = 0;
  let declines = 0;
  let amountCaptured = 0;
  for (const charge of state.charges.values()) {
    if (charge.status === "succeeded") {
      charges += 1;
      amountCaptured += charge.amount_captured;
    } else if (charge.status === "failed") {
      declines += 1;
    }
  }
  let amountRefunded = 0;
  for (const refund of state.refunds.values()) {
    amountRefunded += refund.amount;
  }
  const deliveries = { pending: 0, succeeded: 0, failed: 0 };
  for (const delivery of state.webhookDeliveries.values()) {
    deliveries[delivery.status] += 1;
  }
  return {
    payment_intents: state.paymentIntents.size,
    charges,
    declines,
    refunds: state.refunds.size,
    amount_captured: amountCaptured,
    amount_refunded: amountRefunded,
    idempotent_replays: state.counters.idempotent_replays,
    api_requests: state.counters.api_requests,
    webhook_attempts: state.counters.webhook_attempts,
    webhook_deliveries_succeeded: deliveries.succeeded,
    webhook_deliveries_failed: deliveries.failed,
    webhook_deliveries_pending: deliveries.pending,
  };
}

function list<T>(data: T[]): SimulatorList<T> {
  return { object: "list", data };
}

function stringFilter(query: Params, name: string): string | null {
  const value = query[name];
  return typeof value === "string" && value !== "" ? value : null;
}

/** True when the object has every `metadata[key]=value` pair of the query. */
function metadataMatches(metadata: Stripe.Metadata | null, query: Params): boolean {
  const wanted = query.metadata;
  if (typeof wanted !== "object" || wanted === null || Array.isArray(wanted)) {
    return true;
  }
  return Object.entries(wanted).every(([key, value]) => metadata?.[key] === value);
}

function fieldMatches(actual: unknown, query: Params, name: string): boolean {
  const wanted = stringFilter(query, name);
  return wanted === null || actual === wanted;
}

async function readJson(c: Context): Promise<unknown> {
  const text = await c.req.text();
  if (text.trim() === "") {
    return {};
  }
  return JSON.parse(text);
}

function controlError(c: Context, status: 400 | 404 | 409, message: string) {
  return c.json({ error: { message } }, status);
}

/**
 * Registers the test-control API under `/_sim` (JSON, no authentication):
 * health, stats, reset, fault rules, webhook settings, event resend and listings with filters.
 * See simulator/README.md for every route with its request and response shapes.
 */
export function registerControlRoutes(app: Hono<SimulatorEnv>, deps: ControlDeps): void {
  const { store, webhooks, faults, requestLog } = deps;

  app.get("/_sim/health", (c) => c.json({ status: "ok" }));

  app.get("/_sim/stats", (c) => c.json(computeStats(store.state)));

  app.post("/_sim/reset", async (c) => {
    store.reset();
    faults.clear();
    requestLog.clear();
    webhooks.reset();
    await store.persist();
    return c.json({ status: "reset" });
  });

  app.get("/_sim/faults", (c) => c.json({ faults: faults.list() }));

  app.post("/_sim/faults", async (c) => {
    let rule: FaultRule;
    try {
      rule = FaultRuleSchema.parse(await readJson(c));
    } catch (error) {
      return controlError(c, 400, describeBodyError(error));
    }
    faults.add(rule);
    return c.json({ faults: faults.list() });
  });

  app.delete("/_sim/faults", (c) => {
    faults.clear();
    return c.json({ faults: faults.list() });
  });

  app.get("/_sim/webhooks", (c) => c.json(webhooks.settings));

  app.post("/_sim/webhooks", async (c) => {
    let patch: Partial<WebhookSettings>;
    try {
      patch = WebhookSettingsPatchSchema.parse(await readJson(c));
    } catch (error) {
      return controlError(c, 400, describeBodyError(error));
    }
    return c.json(webhooks.configure(patch));
  });

  app.post("/_sim/events/:id/resend", async (c) => {
    const id = c.req.param("id");
    if (!store.state.events.has(id)) {
      return controlError(c, 404, `No such event: '${id}'`);
    }
    const delivery = webhooks.resend(id);
    if (delivery === null) {
      return controlError(
        c,
        409,
        "No webhook URL is configured; set one with POST /_sim/webhooks.",
      );
    }
    await store.persist();
    return c.json(delivery, 202);
  });

  app.get("/_sim/payment_intents", (c) => {
    const query = parseParams(new URL(c.req.url).search.slice(1));
    const data = [...store.state.paymentIntents.values()].filter(
      (pi) => fieldMatches(pi.status, query, "status") && metadataMatches(pi.metadata, query),
    );
    return c.json(list(data));
  });

  app.get("/_sim/charges", (c) => {
    const query = parseParams(new URL(c.req.url).search.slice(1));
    const data = [...store.state.charges.values()].filter(
      (charge) =>
        fieldMatches(charge.status, query, "status") &&
        fieldMatches(charge.payment_intent, query, "payment_intent") &&
        metadataMatches(charge.metadata, query),
    );
    return c.json(list(data));
  });

  app.get("/_sim/refunds", (c) => {
    const query = parseParams(new URL(c.req.url).search.slice(1));
    const data = [...store.state.refunds.values()].filter(
      (refund) =>
        fieldMatches(refund.payment_intent, query, "payment_intent") &&
        fieldMatches(refund.charge, query, "charge") &&
        metadataMatches(refund.metadata, query),
    );
    return c.json(list(data));
  });

  app.get("/_sim/events", (c) => {
    const query = parseParams(new URL(c.req.url).search.slice(1));
    const deliveriesByEvent = new Map<string, WebhookDelivery[]>();
    for (const delivery of store.state.webhookDeliveries.values()) {
      const forEvent = deliveriesByEvent.get(delivery.event_id) ?? [];
      forEvent.push(delivery);
      deliveriesByEvent.set(delivery.event_id, forEvent);
    }
    const data: SimulatorEventView[] = [...store.state.events.values()]
      .filter(
        (event) =>
          fieldMatches(event.type, query, "type") &&
          fieldMatches((event.data.object as { id?: unknown }).id, query, "object_id"),
      )
      .map((event) => ({ ...event, deliveries: deliveriesByEvent.get(event.id) ?? [] }));
    return c.json(list(data));
  });

  app.get("/_sim/requests", (c) => {
    const query = parseParams(new URL(c.req.url).search.slice(1));
    const prefix = stringFilter(query, "path_prefix");
    const data: LoggedRequest[] = requestLog
      .list()
      .filter(
        (entry) =>
          (prefix === null || entry.path.startsWith(prefix)) &&
          fieldMatches(entry.method, query, "method") &&
          fieldMatches(entry.idempotency_key, query, "idempotency_key"),
      );
    return c.json(list(data));
  });
}

function describeBodyError(error: unknown): string {
  if (error instanceof z.ZodError) {
    return `Invalid body: ${z.prettifyError(error)}`;
  }
  return `Invalid JSON body: ${(error as Error).message}`;
}
