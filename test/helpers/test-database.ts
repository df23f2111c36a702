import { existsSync } from "node:fs";
import { chmod, mkdtemp, rm } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join } from "node:path";
import postgres from "postgres";
import { startEmbeddedPostgres } from "../../src/db/embedded.js";

/** A PostgreSQL server for the test run, and where it came from. */
export interface TestServer {
  /** URL of a maintenance database on the server (for CREATE DATABASE). */
  adminUrl: string;
  source: "DATABASE_URL" | "testcontainers" | "embedded";
  stop(): Promise<void>;
}

/**
 * The fallback chain: `DATABASE_URL` if set, else a testcontainers
 * PostgreSQL if a container runtime answers, else embedded PostgreSQL. Importing
 * testcontainers costs seconds, so it is only tried when a runtime is configured at all.
 */
export async function startTestServer(log: (line: string) => void): Promise<TestServer> {
  const url = process.env.DATABASE_URL;
  if (url) return { adminUrl: url, source: "DATABASE_URL", stop: async () => {} };

  if (containerRuntimeConfigured()) {
    try {
      const { PostgreSqlContainer } = await import("@testcontainers/postgresql");
      const container = await new PostgreSqlContainer("postgres:17-alpine").start();
      return {
        adminUrl: container.getConnectionUri(),
        source: "testcontainers",
        stop: async () => {
          await container.stop();
        },
      };
    } catch (error) {
      log(
        `testcontainers unavailable (${String(error).split("\n")[0]}); using embedded PostgreSQL`,
      );
    }
  }

  const dir = await mkdtemp(join(tmpdir(), "idempotent-payments-test-"));
  // mkdtemp makes a 0700 directory; the server runs as the postgres user and must enter it.
  await chmod(dir, 0o755);
  const embedded = await startEmbeddedPostgres({
    dataDir: join(dir, "postgres"),
    // A throwaway cluster: durability buys nothing and costs seconds.
    postgresFlags: [
      "-c",
      "fsync=off",
      "-c",
      "synchronous_commit=off",
      "-c",
      "full_page_writes=off",
    ],
  });
  return {
    adminUrl: embedded.url,
    source: "embedded",
    stop: async () => {
      await embedded.stop();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function containerRuntimeConfigured(): boolean {
  if (process.env.DOCKER_HOST || process.env.TESTCONTAINERS_HOST_OVERRIDE) return true;
  const sockets = [
    join(homedir(), ".testcontainers.properties"),
    "/var/run/docker.sock",
    join(homedir(), ".docker", "run", "docker.sock"),
    process.env.XDG_RUNTIME_DIR ? join(process.env.XDG_RUNTIME_DIR, "podman", "podman.sock") : "",
  ];
  return sockets.some((path) => path && existsSync(path));
}

/** Creates a new, empty database on the server and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`CREATE DATABASE "${name}"`);
  } finally {
    await admin.end();
  }
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  return url.toString();
}

export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
