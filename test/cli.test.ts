import { execFile } from "node:child_process";
import { readdirSync } from "node:fs";
import { promisify } from "node:util";
import { eq, sql } from "drizzle-orm";
import postgres from "postgres";
import { describe, expect, inject, it } from "vitest";
import { migrateDatabase } from "../src/db/migrate.js";
import { tenants } from "../src/db/schema.js";
import { hashApiKey } from "../src/tenants/tenants.queries.js";
import { apiClient, ORDER_BODY, testApp, useDatabase } from "./helpers/harness.js";
import { REPO_ROOT } from "./helpers/server-process.js";
import { createDatabase, dropDatabase } from "./helpers/test-database.js";

const run = promisify(execFile);
const { db } = useDatabase();

function npm(args: string[], env: Record<string, string> = {}) {
  return run("npm", args, {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: inject("databaseUrl"), LOG_LEVEL: "warn", ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

describe("npm run tenant:create", () => {
  it("prints a new API key as the only stdout line; the key works and is stored hashed", async () => {
    const name = `acme ${Date.now()}`;
    const { code, stdout, stderr } = await npm([
      "run",
      "--silent",
      "tenant:create",
      "--",
      ...name.split(" "),
    ]);
    expect(code).toBe(0);
    const lines = stdout.split("\n").filter(Boolean);
    expect(lines).toHaveLength(1);
    const apiKey = lines[0] as string;
    expect(apiKey).toMatch(/^sk_[A-Za-z0-9_-]{43}$/);
    expect(stderr).toContain("created tenant ten_");

    const [tenant] = await db.select().from(tenants).where(eq(tenants.name, name));
    expect(tenant?.apiKeyHash).toBe(hashApiKey(apiKey));
    const [plain] = await db.execute<{ n: number }>(
      sql`SELECT count(*)::int AS n FROM tenants WHERE api_key_hash = ${apiKey} OR name = ${apiKey}`,
    );
    expect(plain?.n).toBe(0);
    const res = await apiClient(testApp(db), apiKey).post("/v1/orders", ORDER_BODY);
    expect(res.status).toBe(201);
  });

  it("exits 2 with the usage when the name is missing", async () => {
    const { code, stdout, stderr } = await npm(["run", "--silent", "tenant:create"]);
    expect(code).toBe(2);
    expect(stdout).toBe("");
    expect(stderr).toContain("usage: npm run --silent tenant:create -- <name>");
  });
});

describe("configuration", () => {
  it.each([
    ["IDEMPOTENCY_TTL_MS", "soon"],
    ["PORT", "70000"],
    ["MIGRATE_ON_START", "perhaps"],
    ["DATABASE_URL", "mysql://localhost/x"],
  ])("stops the process with a message naming %s when it is %s", async (name, value) => {
    const { code, stderr } = await run(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: REPO_ROOT,
      env: { ...process.env, [name]: value },
    }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(code).toBe(1);
    expect(stderr).toContain("Invalid configuration");
    expect(stderr).toContain(`${name}="${value}"`);
  });
});

describe("migrations", () => {
  it("apply once to a fresh database even when several processes migrate at the same time", async () => {
    const name = `test_migrate_${Date.now()}`;
    const url = await createDatabase(inject("adminUrl"), name);
    try {
      await Promise.all([migrateDatabase(url), migrateDatabase(url), migrateDatabase(url)]);
      const cli = await npm(["run", "--silent", "db:migrate"], { DATABASE_URL: url });
      expect(cli.code).toBe(0);
      const client = postgres(url, { max: 1, onnotice: () => {} });
      const applied = await client`SELECT count(*)::int AS n FROM drizzle.__drizzle_migrations`;
      const tables = await client`
        SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`;
      await client.end();
      const files = readdirSync(`${REPO_ROOT}/drizzle`).filter((f) => f.endsWith(".sql"));
      expect(applied[0]?.n).toBe(files.length);
      expect(tables.map((t) => t.table_name)).toEqual(
        expect.arrayContaining(["idempotency_keys", "order_items", "orders", "tenants"]),
      );
    } finally {
      await dropDatabase(inject("adminUrl"), name);
    }
  });
});
