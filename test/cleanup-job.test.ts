import { execFile, spawn, spawnSync } from "node:child_process";
import { once } from "node:events";
import { setTimeout as sleep } from "node:timers/promises";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { openDatabase } from "../src/db/client.js";
import { ADVISORY_LOCK_NAMESPACE, JOB_LOCKS } from "../src/db/locks.js";
import { startCleanupJob } from "../src/jobs/cleanup-job.js";
import { createLogger } from "../src/logger.js";
import { createMetrics } from "../src/metrics.js";
import { createTestTenant } from "./helpers/harness.js";
import { insertRecords, remainingKeys, usePrivateDatabase } from "./helpers/private-database.js";
import { sample } from "./helpers/prometheus.js";
import { REPO_ROOT, startServer } from "./helpers/server-process.js";

/** The cleanup as it runs in production: the server's job, several servers, the CLI. */
const priv = usePrivateDatabase("cleanup_job");
const db = () => priv.handle.db;
const run = promisify(execFile);

type LogLine = Record<string, unknown> & { msg: string };

function captureLogger() {
  const lines: LogLine[] = [];
  const logger = createLogger("debug", {
    write: (line: string) => {
      lines.push(JSON.parse(line));
    },
  });
  return { logger, lines };
}

async function until(condition: () => Promise<boolean>, what: string, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await sleep(25);
  }
}

async function deletableLeft(tenantId: string): Promise<number> {
  return (await remainingKeys(db(), tenantId)).length;
}

describe("the server's cleanup job", () => {
  it("deletes the backlog, logs and counts it, and runs no more once stopped", async () => {
    const { tenant } = await createTestTenant(db(), "job");
    await insertRecords(db(), tenant.id, { count: 250, expiresInSeconds: -1 });
    const { logger, lines } = captureLogger();
    const metrics = createMetrics();
    const job = startCleanupJob({
      database: priv.open(2),
      intervalMs: 100,
      batchSize: 100,
      logger,
      metrics,
    });
    try {
      await until(async () => (await deletableLeft(tenant.id)) === 0, "backlog deleted");
      await until(
        async () => lines.some((l) => l.msg === "cleanup" && l.deleted === 250),
        "log line",
      );
      expect(lines.find((l) => l.msg === "cleanup" && l.deleted === 250)).toMatchObject({
        level: 30,
        status: "completed",
        batches: 3,
        duration_ms: expect.any(Number),
      });
      // Later runs find nothing and say so at debug level only.
      await until(
        async () => lines.some((l) => l.msg === "cleanup" && l.deleted === 0),
        "an idle run",
      );
      expect(lines.find((l) => l.msg === "cleanup" && l.deleted === 0)?.level).toBe(20);
    } finally {
      await job.stop();
    }
    const text = await metrics.registry.metrics();
    expect(sample(text, "idempotency_cleanup_deleted_total")).toBe(250);
    expect(sample(text, "idempotency_cleanup_runs_total", { status: "completed" })).toBeGreaterThan(
      1,
    );
    expect(sample(text, "idempotency_cleanup_runs_total", { status: "failed" })).toBe(0);
    expect(sample(text, "idempotency_cleanup_last_success_timestamp_seconds")).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );

    await insertRecords(db(), tenant.id, { count: 5, expiresInSeconds: -1 });
    await sleep(400);
    expect(await deletableLeft(tenant.id)).toBe(5);
    await priv.handle.client`DELETE FROM idempotency_keys WHERE tenant_id = ${tenant.id}`;
  });

  it("stops a long run between two batches when asked, and reports it as aborted", async () => {
    const { tenant } = await createTestTenant(db(), "abort");
    await insertRecords(db(), tenant.id, { count: 20_000, expiresInSeconds: -1 });
    const { logger, lines } = captureLogger();
    const metrics = createMetrics();
    const job = startCleanupJob({
      database: priv.open(2),
      intervalMs: 60_000,
      batchSize: 10,
      logger,
      metrics,
    });
    await until(
      async () => sample(await metrics.registry.metrics(), "idempotency_cleanup_deleted_total") > 0,
      "a first batch",
    );
    const stopping = Date.now();
    await job.stop();
    expect(Date.now() - stopping).toBeLessThan(5000);
    const aborted = lines.find((l) => l.msg === "cleanup");
    expect(aborted).toMatchObject({ status: "aborted" });
    const left = await deletableLeft(tenant.id);
    expect(left).toBeGreaterThan(0);
    expect(20_000 - left).toBe(aborted?.deleted);
    const text = await metrics.registry.metrics();
    expect(sample(text, "idempotency_cleanup_runs_total", { status: "aborted" })).toBe(1);
    expect(sample(text, "idempotency_cleanup_deleted_total")).toBe(20_000 - left);
    // Tidy up for the next tests.
    const rest = startCleanupJob({
      database: priv.open(2),
      intervalMs: 60_000,
      batchSize: 5000,
      logger,
    });
    await until(async () => (await deletableLeft(tenant.id)) === 0, "the rest deleted");
    await rest.stop();
  });

  it("logs and counts a failed run, never throws, and tries again at the next interval", async () => {
    const { logger, lines } = captureLogger();
    const metrics = createMetrics();
    const missing = new URL(priv.url);
    missing.pathname = "/no_such_database_for_cleanup";
    const broken = openDatabase(missing.toString(), { max: 2 });
    const job = startCleanupJob({
      database: broken,
      intervalMs: 50,
      batchSize: 10,
      logger,
      metrics,
    });
    try {
      await until(
        async () => lines.filter((l) => l.msg === "cleanup failed").length >= 2,
        "two failed runs",
      );
    } finally {
      await job.stop();
      await broken.close();
    }
    const failure = lines.find((l) => l.msg === "cleanup failed");
    expect(failure).toMatchObject({ level: 50, deleted: 0 });
    expect(JSON.stringify(failure?.err)).toContain("no_such_database_for_cleanup");
    const text = await metrics.registry.metrics();
    expect(
      sample(text, "idempotency_cleanup_runs_total", { status: "failed" }),
    ).toBeGreaterThanOrEqual(2);
  });

  it("refuses an interval of 0: the caller decides not to start it", () => {
    const { logger } = captureLogger();
    expect(() =>
      startCleanupJob({ database: priv.handle, intervalMs: 0, batchSize: 10, logger }),
    ).toThrow("cleanup interval must be positive, got 0 ms");
  });
});

describe("servers running the job", () => {
  it("two servers on one database share the backlog: each record deleted once, by one of them", async () => {
    const { tenant } = await createTestTenant(db(), "servers");
    const env = {
      DATABASE_URL: priv.url,
      CLEANUP_INTERVAL_MS: "100",
      CLEANUP_BATCH_SIZE: "50",
      LOG_LEVEL: "debug",
    };
    const live = await insertRecords(db(), tenant.id, { count: 3, expiresInSeconds: 3600 });
    const servers = await Promise.all([startServer(env), startServer(env)]);
    try {
      await insertRecords(db(), tenant.id, { count: 2000, expiresInSeconds: -1 });
      await until(async () => (await deletableLeft(tenant.id)) === 3, "backlog deleted");
      const texts = await Promise.all(
        servers.map(async (s) => (await fetch(`${s.url}/metrics`)).text()),
      );
      const deleted = texts.map((t) => sample(t, "idempotency_cleanup_deleted_total"));
      expect(deleted.reduce((a, b) => a + b)).toBe(2000);
      expect((await remainingKeys(db(), tenant.id)).sort()).toEqual([...live].sort());
      for (const server of servers) await server.waitForOutput('"msg":"cleanup"');
    } finally {
      const codes = await Promise.all(servers.map((s) => s.kill("SIGTERM")));
      expect(codes).toEqual([0, 0]);
    }
  });

  it("does not run when CLEANUP_INTERVAL_MS is 0", async () => {
    const { tenant } = await createTestTenant(db(), "disabled");
    await insertRecords(db(), tenant.id, { count: 3, expiresInSeconds: -1 });
    const server = await startServer({ DATABASE_URL: priv.url, CLEANUP_INTERVAL_MS: "0" });
    try {
      await sleep(500);
      expect(await deletableLeft(tenant.id)).toBe(3);
      const text = await (await fetch(`${server.url}/metrics`)).text();
      expect(sample(text, "idempotency_cleanup_runs_total")).toBe(0);
    } finally {
      expect(await server.kill("SIGTERM")).toBe(0);
    }
    await cleanupCli();
  });
});

function cleanupCli(env: Record<string, string> = {}) {
  return run("npm", ["run", "--silent", "cleanup"], {
    cwd: REPO_ROOT,
    env: { ...process.env, DATABASE_URL: priv.url, LOG_LEVEL: "warn", ...env },
  }).then(
    ({ stdout, stderr }) => ({ code: 0, stdout, stderr }),
    (error: { code: number; stdout: string; stderr: string }) => error,
  );
}

describe("npm run cleanup", () => {
  it("deletes every expired record once, prints one summary line, and no bar off a terminal", async () => {
    await cleanupCli();
    const { tenant } = await createTestTenant(db(), "cli");
    await insertRecords(db(), tenant.id, { count: 1234, expiresInSeconds: -1 });
    const live = await insertRecords(db(), tenant.id, { count: 3, expiresInSeconds: 3600 });
    const { code, stdout, stderr } = await cleanupCli({ CLEANUP_BATCH_SIZE: "500" });
    expect(code).toBe(0);
    expect(stdout).toMatch(
      /^cleanup completed: deleted 1234 expired records in 3 batches, \d+\.\d\d s \(\d+ records\/s\) on 127\.0\.0\.1:\d+\/test_cleanup_job_\w+\n$/,
    );
    expect(stderr).not.toContain("cleanup [");
    expect((await remainingKeys(db(), tenant.id)).sort()).toEqual([...live].sort());

    const again = await cleanupCli();
    expect(again.stdout).toMatch(/^cleanup completed: deleted 0 expired records in 0 batches/);
  });

  it.runIf(spawnSync("script", ["--version"]).status === 0)(
    "draws a progress bar on a terminal",
    async () => {
      const { tenant } = await createTestTenant(db(), "tty");
      await insertRecords(db(), tenant.id, { count: 300, expiresInSeconds: -1 });
      // util-linux `script` runs the command on a pseudo-terminal and copies what it prints.
      const { stdout } = await run("script", ["-qec", "npm run --silent cleanup", "/dev/null"], {
        cwd: REPO_ROOT,
        env: {
          ...process.env,
          DATABASE_URL: priv.url,
          LOG_LEVEL: "warn",
          CLEANUP_BATCH_SIZE: "100",
        },
      });
      expect(stdout).toContain("cleanup [");
      expect(stdout).toContain("100% | 300/300 records");
      expect(stdout).toContain("cleanup completed: deleted 300 expired records in 3 batches");
      expect(await deletableLeft(tenant.id)).toBe(0);
    },
  );

  it("stops after the batch in flight on Ctrl-C and still prints what it did", async () => {
    const { tenant } = await createTestTenant(db(), "cli-int");
    await insertRecords(db(), tenant.id, { count: 50_000, expiresInSeconds: -1 });
    const child = spawn(process.execPath, ["--import", "tsx", "src/jobs/cleanup-cli.ts"], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: priv.url, LOG_LEVEL: "warn", CLEANUP_BATCH_SIZE: "10" },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk;
    });
    const exited = once(child, "exit");
    await until(async () => (await deletableLeft(tenant.id)) < 50_000, "deleting started");
    child.kill("SIGINT");
    const [code] = (await exited) as [number | null];
    expect(code).toBe(0);
    const match = /^cleanup aborted: deleted (\d+) expired records in (\d+) batches/.exec(stdout);
    expect(match, stdout).not.toBeNull();
    const left = await deletableLeft(tenant.id);
    expect(left).toBeGreaterThan(0);
    expect(Number(match?.[1])).toBe(50_000 - left);
    expect((await cleanupCli({ CLEANUP_BATCH_SIZE: "10000" })).stdout).toContain(
      `deleted ${left} expired records`,
    );
  });

  it("exits 0 without deleting when another runner holds the cleanup lock", async () => {
    const { tenant } = await createTestTenant(db(), "cli-skip");
    await insertRecords(db(), tenant.id, { count: 7, expiresInSeconds: -1 });
    const holder = await priv.handle.client.reserve();
    try {
      await holder`SELECT pg_advisory_lock(${ADVISORY_LOCK_NAMESPACE}, ${JOB_LOCKS.cleanup})`;
      const { code, stdout } = await cleanupCli();
      expect(code).toBe(0);
      expect(stdout).toMatch(/^cleanup skipped: another runner holds the cleanup lock on /);
      expect(await deletableLeft(tenant.id)).toBe(7);
    } finally {
      await holder`SELECT pg_advisory_unlock(${ADVISORY_LOCK_NAMESPACE}, ${JOB_LOCKS.cleanup})`;
      holder.release();
    }
    expect((await cleanupCli()).stdout).toContain("deleted 7 expired records");
  });

  it.each([
    ["CLEANUP_BATCH_SIZE", "0"],
    ["CLEANUP_BATCH_SIZE", "lots"],
    ["CLEANUP_INTERVAL_MS", "-1"],
  ])("stops with a message naming %s when it is %s", async (name, value) => {
    const cli = await cleanupCli({ [name]: value });
    expect(cli.code).toBe(1);
    expect(cli.stdout).toBe("");
    expect(cli.stderr).toContain("Invalid configuration");
    expect(cli.stderr).toContain(`${name}="${value}"`);
    const server = await run(process.execPath, ["--import", "tsx", "src/main.ts"], {
      cwd: REPO_ROOT,
      env: { ...process.env, DATABASE_URL: priv.url, [name]: value },
    }).then(
      () => ({ code: 0, stderr: "" }),
      (error: { code: number; stderr: string }) => error,
    );
    expect(server.code).toBe(1);
    expect(server.stderr).toContain(`${name}="${value}"`);
  });
});
