import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ERROR_CODES, ERRORS, type ErrorCode } from "../src/http/errors.js";
import { serveApp } from "../src/http/node-server.js";
import { createLogger } from "../src/logger.js";
import { createMetrics } from "../src/metrics.js";
import {
  createTestTenant,
  expectedProblem,
  newKey,
  ORDER_BODY,
  tenantRows,
  testApp,
  useDatabase,
} from "./helpers/harness.js";

/**
 * What never reaches a route, over a real socket: requests Node's HTTP parser refuses, a
 * request that times out, and a client that hangs up mid-body. Each gets a problem+json answer
 * (or, for a client gone, none), a log line, and a count, never a 500.
 */
const { db } = useDatabase();
const output: string[] = [];
const logger = createLogger("info", { write: (line: string) => void output.push(line) });
const metrics = createMetrics();
const app = testApp(db, {}, { logger, metrics });
const REQUEST_TIMEOUT_MS = 600;
const server = serveApp({
  fetch: app.fetch,
  port: 0,
  hostname: "127.0.0.1",
  logger,
  metrics,
  requestTimeoutMs: REQUEST_TIMEOUT_MS,
});
let port = 0;
let tenant: { id: string };
let apiKey: string;

beforeAll(async () => {
  if (!server.listening) await new Promise((resolve) => server.once("listening", resolve));
  port = (server.address() as AddressInfo).port;
  ({ tenant, apiKey } = await createTestTenant(db, "hostile-server"));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

/** Writes raw bytes, then reads until the server closes the connection (or `waitMs` passes). */
function raw(chunks: (string | Buffer)[], options: { hangUpAfterMs?: number } = {}) {
  return new Promise<string>((resolve, reject) => {
    const socket = connect(port, "127.0.0.1");
    const received: Buffer[] = [];
    socket.on("data", (chunk) => received.push(chunk));
    socket.on("error", reject);
    socket.on("close", () => resolve(Buffer.concat(received).toString("latin1")));
    socket.on("connect", () => {
      for (const chunk of chunks) socket.write(chunk);
      if (options.hangUpAfterMs !== undefined) {
        setTimeout(() => socket.destroy(), options.hangUpAfterMs);
      }
    });
  });
}

function parse(response: string) {
  const [head = "", body = ""] = response.split("\r\n\r\n", 2);
  const [statusLine = "", ...headerLines] = head.split("\r\n");
  const headers = new Map(
    headerLines.map((line) => {
      const at = line.indexOf(":");
      return [line.slice(0, at).toLowerCase(), line.slice(at + 1).trim()] as const;
    }),
  );
  return { status: Number(statusLine.split(" ")[1]), headers, body };
}

function logged() {
  return output.map((line) => JSON.parse(line) as Record<string, unknown>);
}

async function countOf(status: number): Promise<number> {
  const metric = await metrics.registry.getSingleMetric("http_requests_total")?.get();
  return (metric?.values ?? [])
    .filter((value) => Number(value.labels.status) === status)
    .reduce((sum, value) => sum + value.value, 0);
}

describe.each<[string, (string | Buffer)[], ErrorCode]>([
  [
    "headers over 16 KB",
    [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Fill: ${"a".repeat(17 * 1024)}\r\n\r\n`],
    "request_header_fields_too_large",
  ],
  [
    "both Content-Length and Transfer-Encoding",
    [
      "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n" +
        "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    ],
    "malformed_request",
  ],
  ["a request line that is not HTTP", ["HELLO THERE\r\n\r\n"], "malformed_request"],
  ["an HTTP/1.1 request without Host", ["GET /healthz HTTP/1.1\r\n\r\n"], "malformed_request"],
  [
    "a Host that makes no URL",
    ["GET /healthz HTTP/1.1\r\nHost: a b@c\r\n\r\n"],
    "malformed_request",
  ],
  ["headers that never end", ["GET /healthz HTTP/1.1\r\nHost: x\r\n"], "request_timeout"],
])("%s", (_label, chunks, code) => {
  it(`answers ${ERRORS[code].status} ${code} as problem+json, logs it and counts it`, async () => {
    const before = await countOf(ERRORS[code].status);
    const from = output.length;
    const res = parse(await raw(chunks));
    expect(res.status).toBe(ERRORS[code].status);
    expect(res.headers.get("content-type")).toBe("application/problem+json");
    const requestId = res.headers.get("x-request-id");
    expect(JSON.parse(res.body)).toEqual(expectedProblem(code, { request_id: requestId }));
    expect(logged().slice(from)).toContainEqual(
      expect.objectContaining({ request_id: requestId, status: ERRORS[code].status, code }),
    );
    expect(await countOf(ERRORS[code].status)).toBe(before + 1);
  });
});

describe("a body that stops arriving", () => {
  const order = JSON.stringify(ORDER_BODY);
  const head = (length: number) =>
    "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
    `Authorization: Bearer ${apiKey}\r\nIdempotency-Key: ${newKey()}\r\n` +
    `Content-Length: ${length}\r\n\r\n`;

  it("is a 408 request_timeout once the request timeout passes, counted once, storing nothing", async () => {
    const rows = await tenantRows(db, tenant.id);
    const timeoutsBefore = await countOf(408);
    const closedBefore = await countOf(499);
    const res = parse(await raw([head(order.length), order.slice(0, 10)]));
    expect(res.status).toBe(408);
    expect(JSON.parse(res.body)).toEqual(
      expectedProblem("request_timeout", { request_id: res.headers.get("x-request-id") }),
    );
    await expect.poll(() => countOf(408), { timeout: 2000 }).toBe(timeoutsBefore + 1);
    const metric = await metrics.registry.getSingleMetric("http_requests_total")?.get();
    expect(metric?.values).toContainEqual(
      expect.objectContaining({ labels: { method: "POST", route: "/v1/orders", status: 408 } }),
    );
    expect(await countOf(499)).toBe(closedBefore);
    expect(await tenantRows(db, tenant.id)).toEqual(rows);
  });

  it("is a 400 malformed_request when its chunked framing breaks, counted once", async () => {
    const rows = await tenantRows(db, tenant.id);
    const before = await countOf(400);
    const chunked =
      "POST /v1/orders HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
      `Authorization: Bearer ${apiKey}\r\nIdempotency-Key: ${newKey()}\r\n` +
      `Transfer-Encoding: chunked\r\n\r\n5\r\n${order.slice(0, 5)}\r\nzz\r\n`;
    const res = parse(await raw([chunked]));
    expect(res.status).toBe(400);
    expect(JSON.parse(res.body)).toEqual(
      expectedProblem("malformed_request", { request_id: res.headers.get("x-request-id") }),
    );
    await expect.poll(() => countOf(400), { timeout: 2000 }).toBe(before + 1);
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(await countOf(400)).toBe(before + 1);
    expect(await tenantRows(db, tenant.id)).toEqual(rows);
  });

  it("from a client that hung up is an info line and a 499 count, never a 500", async () => {
    const rows = await tenantRows(db, tenant.id);
    const errorsBefore = await countOf(500);
    const closedBefore = await countOf(499);
    const from = output.length;
    await raw([head(order.length), order.slice(0, 10)], { hangUpAfterMs: 50 });
    await expect.poll(() => countOf(499), { timeout: 2000 }).toBe(closedBefore + 1);
    expect(await countOf(500)).toBe(errorsBefore);
    const lines = logged().slice(from);
    expect(lines).toContainEqual(
      expect.objectContaining({ level: 30, msg: "client closed the request" }),
    );
    expect(lines.filter((line) => Number(line.level) >= 50)).toEqual([]);
    expect(await tenantRows(db, tenant.id)).toEqual(rows);
  });
});

describe("raw bytes on the socket", () => {
  const RAW_RUNS = Number(process.env.FUZZ_RAW_RUNS ?? 1000);
  const token = fc.string({
    unit: fc.constantFrom(..."GETPOSUADLHCIN-_/*?%:@.0123456789abcxyz \t\u0000\u00ff"),
    maxLength: 12,
  });
  const method = fc.oneof(
    fc.constantFrom("GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"),
    token,
  );
  const target = fc.oneof(
    fc.constantFrom("/healthz", "/v1/orders", "/v1/orders/x/cancel", "*", "/..%2f", "/%ff", "//x"),
    fc.constantFrom("http://x/v1/orders", "http://[::1/", "https://a b/"),
    token.map((t) => `/${t}`),
  );
  const version = fc.oneof(
    { weight: 4, arbitrary: fc.constant("HTTP/1.1") },
    { weight: 1, arbitrary: fc.constantFrom("HTTP/1.0", "HTTP/2.0", "HTTP/9", "http/1.1", "") },
  );
  const header = fc.oneof(
    fc.constantFrom(
      "Host: x",
      "Host: a b",
      "Host: [::1",
      "Host: x\r\nHost: y",
      "Content-Length: 3",
      "Content-Length: -1",
      "Content-Length: 1, 2",
      "Content-Length: 99999999999999999999",
      "Transfer-Encoding: chunked",
      "Transfer-Encoding: gzip, chunked",
      "Content-Type: application/json",
      "Content-Encoding: gzip",
      "Authorization: Bearer x",
      "Idempotency-Key: fuzz-key-0000000001",
      " folded: continuation",
      "Bad Header: x",
      "X-Nul: a\u0000b",
    ),
    fc.tuple(token, token).map(([name, value]) => `${name}: ${value}`),
  );
  const body = fc.oneof(
    fc.constant(""),
    fc.constantFrom("{}", "0\r\n\r\n", "3\r\nabc\r\n0\r\n\r\n", "zz\r\n", '{"a":1}'),
    fc.string({ unit: "binary-ascii", maxLength: 40 }),
  );

  it(`never answers 5xx or a bare error to ${RAW_RUNS} fuzzed requests`, async () => {
    const seen = new Map<number, number>();
    await fc.assert(
      fc.asyncProperty(
        method,
        target,
        version,
        fc.array(header, { maxLength: 5 }).map((headers) => ["Host: x", ...headers]),
        body,
        async (m, t, v, headers, payload) => {
          const text = `${m} ${t} ${v}\r\n${[...headers, "Connection: close"].join("\r\n")}\r\n\r\n${payload}`;
          const answer = await raw([Buffer.from(text, "latin1")], { hangUpAfterMs: 1500 });
          if (answer === "") return; // the connection was closed without an answer
          const res = parse(answer);
          seen.set(res.status, (seen.get(res.status) ?? 0) + 1);
          expect(res.status, text).toBeLessThan(500);
          if (res.status >= 400 && m !== "HEAD") {
            expect(res.headers.get("content-type"), text).toBe("application/problem+json");
            const problem = JSON.parse(res.body) as { code: ErrorCode };
            expect(ERROR_CODES).toContain(problem.code);
            expect(ERRORS[problem.code].status).toBe(res.status);
          }
          if (res.status >= 400) expect(res.headers.get("x-request-id"), text).toBeTruthy();
        },
      ),
      { numRuns: RAW_RUNS, endOnFailure: true },
    );
    process.stderr.write(
      `[fuzz raw] ${RAW_RUNS} requests; statuses: ${[...seen].map(([s, n]) => `${s}×${n}`).join(" ")}\n`,
    );
  }, 120_000);
});

it("stays healthy after all of it", async () => {
  const res = parse(await raw(["GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"]));
  expect(res.status).toBe(200);
});
