import { execFile } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join, normalize } from "node:path";
import { promisify } from "node:util";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { createTestTenant, tenantRows, useDatabase } from "./helpers/harness.js";
import { REPO_ROOT, type ServerProcess, startServer } from "./helpers/server-process.js";

/**
 * The built client in a real browser (headless Chromium), against the real server: a page
 * imports the package's ES modules and makes calls from there. A small gateway serves the page
 * and the modules and forwards `/v1/*` to the server (the API sends no CORS headers, so the
 * page and the API share an origin, as they would behind a reverse proxy); it answers the
 * first write with a 503 so the browser also runs a retry.
 *
 * CI installs Chromium (.ci/run); elsewhere the suite needs `CHROMIUM_PATH` or /usr/bin/chromium
 * and is skipped without one.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const haveBrowser = existsSync(CHROMIUM);

const run = promisify(execFile);
const { db } = useDatabase();
let server: ServerProcess;
let gateway: Server;
let gatewayUrl: string;
let distDir: string;
let browser: Browser;
/** Writes the gateway answers 503 before forwarding any. */
let unavailable = 0;
const writes: { path: string; idempotencyKey: string | undefined; status: number }[] = [];

describe.skipIf(!haveBrowser && !process.env.CI)("the client in a browser", () => {
  beforeAll(async () => {
    const buildDir = await mkdtemp(join(tmpdir(), "client-browser-"));
    distDir = join(buildDir, "dist");
    const [started] = await Promise.all([
      startServer({ DATABASE_URL: inject("databaseUrl") }),
      run(
        join(REPO_ROOT, "node_modules/.bin/tsc"),
        ["-p", join(REPO_ROOT, "client/tsconfig.json"), "--outDir", distDir],
        { cwd: REPO_ROOT },
      ),
    ]);
    server = started;
    gateway = createServer(async (req, res) => {
      const url = req.url ?? "/";
      if (url === "/") {
        res.writeHead(200, { "Content-Type": "text/html" }).end("<!doctype html><title>t</title>");
        return;
      }
      if (url.startsWith("/client/")) {
        const file = normalize(join(distDir, url.slice("/client/".length)));
        if (!file.startsWith(distDir)) return void res.writeHead(404).end();
        const code = await readFile(file).catch(() => undefined);
        if (!code) return void res.writeHead(404).end();
        res.writeHead(200, { "Content-Type": "text/javascript" }).end(code);
        return;
      }
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const idempotencyKey = req.headers["idempotency-key"] as string | undefined;
      if (req.method === "POST" && unavailable > 0) {
        unavailable--;
        writes.push({ path: url, idempotencyKey, status: 503 });
        res.writeHead(503, { "Retry-After": "0" }).end();
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of ["authorization", "content-type", "idempotency-key", "accept"]) {
        const value = req.headers[name];
        if (typeof value === "string") headers[name] = value;
      }
      const answer = await fetch(`${server.url}${url}`, {
        method: req.method,
        headers,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
      });
      if (req.method === "POST") writes.push({ path: url, idempotencyKey, status: answer.status });
      const forwarded: Record<string, string> = {};
      for (const [name, value] of answer.headers) {
        if (
          !["content-encoding", "content-length", "transfer-encoding", "connection"].includes(name)
        )
          forwarded[name] = value;
      }
      res.writeHead(answer.status, forwarded).end(Buffer.from(await answer.arrayBuffer()));
    });
    gateway.listen(0, "127.0.0.1");
    await once(gateway, "listening");
    gatewayUrl = `http://127.0.0.1:${(gateway.address() as AddressInfo).port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      ],
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    gateway?.closeAllConnections();
    gateway?.close();
    await server?.kill("SIGTERM");
    if (distDir) await rm(join(distDir, ".."), { recursive: true, force: true });
  });

  it("creates an order through a retry, keeps the key, and raises a typed problem", async () => {
    const { tenant, apiKey } = await createTestTenant(db, "browser");
    const page = await browser.newPage();
    try {
      await page.goto(gatewayUrl);
      unavailable = 1;
      writes.length = 0;
      // Runs in the page: the package's own modules, the browser's fetch, crypto and timers.
      const outcome = await page.evaluate(`(async () => {
        const { createClient, ApiProblem, isApiProblem } = await import("/client/index.js");
        const api = createClient({ baseUrl: location.origin, apiKey: ${JSON.stringify(apiKey)},
          initialRetryDelayMs: 20 });
        const order = { currency: "EUR",
          items: [{ sku: "SKU-1", name: "Mug", quantity: 3, unit_amount: 900 }] };
        const created = await api.orders.create(order);
        const got = await api.orders.get(created.data.id);
        let problem;
        try {
          await api.orders.create({ ...order, currency: "USD" },
            { idempotencyKey: created.idempotencyKey });
        } catch (error) {
          problem = { isProblem: error instanceof ApiProblem, typed: isApiProblem(error,
            "idempotency_key_reused"), status: error.status, code: error.code,
            attempts: error.attempts, requestId: error.requestId };
        }
        return { created: { status: created.status, attempts: created.attempts,
          replayed: created.replayed, key: created.idempotencyKey, id: created.data.id,
          total: created.data.amount_total, requestId: created.requestId },
          sameOrder: got.data.id === created.data.id, problem,
          secure: isSecureContext, userAgent: navigator.userAgent };
      })()`);
      expect(outcome).toMatchObject({
        created: { status: 201, attempts: 2, replayed: false, total: 2700 },
        sameOrder: true,
        problem: {
          isProblem: true,
          typed: true,
          status: 422,
          code: "idempotency_key_reused",
          attempts: 1,
        },
        secure: true,
        userAgent: expect.stringContaining("Chrome/"),
      });
      const { created } = outcome as { created: { key: string; requestId: string } };
      expect(created.key).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-/);
      expect(created.requestId).not.toBe("");
      expect(writes).toEqual([
        { path: "/v1/orders", idempotencyKey: created.key, status: 503 },
        { path: "/v1/orders", idempotencyKey: created.key, status: 201 },
        { path: "/v1/orders", idempotencyKey: created.key, status: 422 },
      ]);
      expect(await tenantRows(db, tenant.id)).toEqual({ orders: 1, items: 1, keys: 1 });
    } finally {
      await page.close();
    }
  });
});
