import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { sql } from "drizzle-orm";
import Stripe from "stripe";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { serveApp } from "../src/http/node-server.js";
import { createLogger } from "../src/logger.js";
import { createMetrics } from "../src/metrics.js";
import {
  createTestTenant,
  expectedProblem,
  newKey,
  TEST_PROVIDER,
  testApp,
} from "./helpers/harness.js";
import { usePrivateDatabase } from "./helpers/private-database.js";

/**
 * Personal data never reaches the log: a marker email and sku go through every way a request
 * can fail, over a real socket, including database errors forced by a trigger (one a client's
 * value causes, one a server fault) whose messages, parameters and details carry them, and the
 * server's whole output is searched for them afterwards.
 */
const database = usePrivateDatabase("logs");
const EMAIL = "leak.marker.7f3a@example.com";
const SKU = "SKU7f3aMARKER";
const output: string[] = [];
const logger = createLogger("trace", { write: (line: string) => void output.push(line) });
let server: ReturnType<typeof serveApp>;
let base = "";
let port = 0;
let apiKey = "";

beforeAll(async () => {
  const { db } = database.handle;
  // The values refused are quoted in the messages, as PostgreSQL's own messages quote them,
  // and repeated in DETAIL, where PostgreSQL puts a failing row.
  // One statement each, in one transaction: Citus (the suite's CITUS_NODES mode) forwards DDL
  // text to the workers as one statement, and takes triggers on distributed tables only when
  // told to; plain PostgreSQL keeps that setting as an unused placeholder.
  await db.transaction(async (tx) => {
    await tx.execute(sql.raw("SET LOCAL citus.enable_unsafe_triggers TO on"));
    await tx.execute(
      sql.raw(`
    CREATE FUNCTION refuse_marked_items() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.sku LIKE 'value-%' THEN
        RAISE EXCEPTION 'value too long: "%"', NEW.sku
          USING ERRCODE = '22001', DETAIL = 'Failing row contains (' || NEW.sku || ').';
      END IF;
      IF NEW.sku LIKE 'fault-%' THEN
        RAISE EXCEPTION 'internal fault at "%"', NEW.sku
          USING ERRCODE = 'XX000', DETAIL = 'Failing row contains (' || NEW.sku || ').';
      END IF;
      RETURN NEW;
    END $$`),
    );
    await tx.execute(
      sql.raw(`CREATE TRIGGER refuse_marked_items BEFORE INSERT ON order_items
      FOR EACH ROW EXECUTE FUNCTION refuse_marked_items()`),
    );
  });
  const metrics = createMetrics();
  const app = testApp(db, {}, { logger, metrics });
  server = serveApp({
    fetch: app.fetch,
    port: 0,
    hostname: "127.0.0.1",
    logger,
    metrics,
    requestTimeoutMs: 500,
  });
  if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
  port = (server.address() as AddressInfo).port;
  base = `http://127.0.0.1:${port}`;
  ({ apiKey } = await createTestTenant(db, "logs"));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

function order(sku: string, extra: Record<string, unknown> = {}) {
  return {
    currency: "EUR",
    items: [{ sku, name: `Lamp ${SKU}`, quantity: 1, unit_amount: 1500 }],
    customer_email: EMAIL,
    metadata: { email: EMAIL, sku: SKU },
    ...extra,
  };
}

function post(path: string, body: string | Uint8Array, headers: Record<string, string> = {}) {
  return fetch(`${base}${path}`, {
    method: "POST",
    headers: {
      Authorization: `Bearer ${apiKey}`,
      "Idempotency-Key": newKey(),
      "Content-Type": "application/json",
      ...headers,
    },
    body,
  });
}

function rawSend(text: string, hangUpAfterMs?: number) {
  return new Promise<void>((resolve) => {
    const socket = connect(port, "127.0.0.1", () => {
      socket.write(text);
      if (hangUpAfterMs !== undefined) setTimeout(() => socket.destroy(), hangUpAfterMs);
    });
    socket.on("data", () => {});
    socket.on("error", () => resolve());
    socket.on("close", () => resolve());
  });
}

describe("the server's output", () => {
  it("holds neither the email nor the sku, whichever way the request failed", async () => {
    const json = JSON.stringify(order(`value-${SKU}`));
    const cases: [string, () => Promise<Response | undefined>, number][] = [
      ["a value the database refuses", () => post("/v1/orders", json), 400],
      [
        "a server fault in the database",
        () => post("/v1/orders", JSON.stringify(order(`fault-${SKU}`))),
        500,
      ],
      ["U+0000 in the name", () => post("/v1/orders", JSON.stringify(order("a\u0000b"))), 400],
      ["malformed JSON", () => post("/v1/orders", `${json.slice(0, -1)},`), 400],
      [
        "bytes that are not UTF-8",
        () =>
          post(
            "/v1/orders",
            Buffer.concat([Buffer.from(json.slice(0, -2)), Buffer.from([0xff, 0x22, 0x7d])]),
          ),
        400,
      ],
      ["a gzip encoding", () => post("/v1/orders", json, { "Content-Encoding": "gzip" }), 415],
      [
        "deep nesting",
        () => post("/v1/orders", `{"a":${"[".repeat(100)}"${EMAIL}"${"]".repeat(100)}}`),
        400,
      ],
      ["no API key", () => post("/v1/orders", json, { Authorization: "Bearer nope" }), 401],
      ["a text body", () => post("/v1/orders", json, { "Content-Type": "text/plain" }), 415],
      [
        "a key reused",
        async () => {
          const key = newKey();
          await post("/v1/orders", JSON.stringify(order("plain")), { "Idempotency-Key": key });
          return post("/v1/orders", json, { "Idempotency-Key": key });
        },
        422,
      ],
      [
        "an email for a payment method",
        () =>
          post(
            "/v1/payments",
            JSON.stringify({ order_id: "ord_01jdq3v6x6m7e9z5k2c8r4t1ya", payment_method: EMAIL }),
          ),
        400,
      ],
      [
        "an unsigned webhook",
        () => post("/v1/webhooks/stripe", json, { "Stripe-Signature": "t=1,v1=00" }),
        400,
      ],
      [
        "a signed webhook of the wrong shape",
        () => {
          const payload = JSON.stringify({
            id: "evt_marker",
            type: "payment_intent.succeeded",
            data: {
              object: {
                id: "pi_1",
                amount: 1,
                currency: "eur",
                metadata: { tenant_id: `${EMAIL}\u0000` },
              },
            },
          });
          const signature = Stripe.webhooks.generateTestHeaderString({
            payload,
            secret: TEST_PROVIDER.webhookSecret,
          });
          return post("/v1/webhooks/stripe", payload, { "Stripe-Signature": signature });
        },
        400,
      ],
      [
        "a PUT",
        () =>
          fetch(`${base}/v1/orders`, {
            method: "PUT",
            headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
            body: json,
          }),
        405,
      ],
    ];
    for (const [label, send, status] of cases) {
      const res = await send();
      expect(res?.status, label).toBe(status);
    }
    const head = (length: number) =>
      `POST /v1/orders HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${apiKey}\r\n` +
      `Idempotency-Key: ${newKey()}\r\nContent-Type: application/json\r\nContent-Length: ${length}\r\n\r\n`;
    await rawSend(`${head(json.length)}${json.slice(0, json.length / 2)}`, 50);
    await rawSend(`${head(json.length)}${json.slice(0, json.length / 2)}`);
    await rawSend(
      `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Email: ${EMAIL}${"a".repeat(17_000)}\r\n\r\n`,
    );
    await rawSend(
      `POST /v1/orders?email=${EMAIL} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n`,
    );
    // The log is asynchronous to the response: wait for the last refusal's line.
    await expect.poll(() => output.length, { timeout: 2000 }).toBeGreaterThan(cases.length + 3);

    const text = output.join("");
    expect(text).not.toContain("leak.marker");
    expect(text).not.toContain("7f3a");
    // Not vacuous: the forced fault was logged as an error, with its cause, codes and stack.
    const lines = output.map((line) => JSON.parse(line));
    expect(lines).toContainEqual(
      expect.objectContaining({
        level: 50,
        msg: "unhandled error",
        // The order's INSERT goes straight to postgres.js: its own error, no drizzle wrapper.
        err: expect.objectContaining({
          type: "PostgresError",
          code: "XX000",
          message: 'internal fault at "…"',
          stack: expect.stringContaining("    at "),
        }),
      }),
    );
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 40, msg: "database refused a value", cause: "22001" }),
    );
    expect(lines).toContainEqual(expect.objectContaining({ msg: "client closed the request" }));
    expect(lines).toContainEqual(
      expect.objectContaining({ msg: "request refused", code: "request_header_fields_too_large" }),
    );
  });

  it("answers the value the database refused as 400 value_not_storable, storing nothing", async () => {
    const { db } = database.handle;
    const [before] = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM orders`);
    const res = await post("/v1/orders", JSON.stringify(order(`value-${SKU}`)));
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual(expectedProblem("value_not_storable"));
    const [after] = await db.execute<{ n: number }>(sql`SELECT count(*)::int AS n FROM orders`);
    expect(after?.n).toBe(before?.n);
    const [keys] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM idempotency_keys WHERE response_status IS NULL`,
    );
    expect(keys?.n).toBe(0);
  });
});
