import { existsSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { serve } from "@hono/node-server";
import { type Browser, chromium } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { API_REFERENCE_SCRIPT_PATH } from "../src/http/openapi-document.js";
import { IDEMPOTENCY_KEY_HEADER_PATTERN } from "../src/idempotency/index.js";
import { testApp, useDatabase } from "./helpers/harness.js";

/**
 * `/docs` in a real browser with the network cut off (every host name but 127.0.0.1 fails to
 * resolve), as in an air-gapped network: the page must render from this server alone.
 */
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";
const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
];

const { db } = useDatabase();
let server: ReturnType<typeof serve>;
let origin: string;
let browser: Browser;

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `no Chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH`,
    );
  }
  const app = testApp(db);
  await new Promise<void>((resolve) => {
    server = serve({ fetch: app.fetch, hostname: "127.0.0.1", port: 0 }, () => resolve());
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_FLAGS });
});

afterAll(async () => {
  await browser?.close();
  await new Promise((resolve) => server?.close(resolve));
});

describe("the API reference at /docs", () => {
  it("renders every operation and the Idempotency-Key parameter with no request elsewhere", async () => {
    const document = (await (await fetch(`${origin}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { summary: string }>>;
    };
    const summaries = Object.values(document.paths).flatMap((operations) =>
      Object.values(operations).map((operation) => operation.summary),
    );
    expect(summaries.length).toBeGreaterThan(10);

    const page = await browser.newPage();
    const requested: string[] = [];
    page.on("request", (request) => requested.push(request.url()));
    const failed: string[] = [];
    page.on("requestfailed", (request) => failed.push(request.url()));
    const errors: string[] = [];
    page.on("pageerror", (error) => errors.push(error.message));

    await page.goto(`${origin}/docs`, { waitUntil: "load" });
    // The script renders the page: the first group's operations, then every group opened.
    await expect
      .poll(() => page.getByText("Create an order", { exact: true }).count(), { timeout: 20_000 })
      .toBeGreaterThan(0);
    const closedGroups = page.locator('button[aria-expanded="false"]:visible', {
      hasText: "Open Group",
    });
    for (let left = await closedGroups.count(); left > 0; left = await closedGroups.count()) {
      await closedGroups.first().click();
    }
    const text = (await page.locator("body").textContent()) ?? "";
    for (const summary of summaries) expect(text).toContain(summary);
    // The operation documents its Idempotency-Key header parameter, with the key's pattern.
    expect(text).toMatch(/Headers\s*Idempotency-Key/);
    expect(text).toContain(IDEMPOTENCY_KEY_HEADER_PATTERN.source);

    const elsewhere = requested.filter((url) => /^https?:/.test(url) && !url.startsWith(origin));
    expect(elsewhere).toEqual([]);
    expect(requested).toContain(`${origin}${API_REFERENCE_SCRIPT_PATH}`);
    expect(failed).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
    // A real browser parsing a 3 MB bundle: give it room on a loaded two-core machine.
  }, 90_000);

  it("serves the reference's script from the installed package, cacheable", async () => {
    const res = await fetch(`${origin}${API_REFERENCE_SCRIPT_PATH}`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toBe("text/javascript; charset=utf-8");
    expect(res.headers.get("cache-control")).toBe("public, max-age=86400");
    expect((await res.text()).length).toBeGreaterThan(1_000_000);
  });
});
