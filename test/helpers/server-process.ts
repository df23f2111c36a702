import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = fileURLToPath(new URL("../..", import.meta.url));

export interface ServerProcess {
  url: string;
  pid: number;
  /** Every stdout and stderr line so far. */
  output: string[];
  /** Resolves with the first output line containing `text`. */
  waitForOutput(text: string, timeoutMs?: number): Promise<string>;
  /** Sends a signal and resolves with the exit code (null when killed by the signal). */
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Runs the real server (`src/main.ts`) as a child process on a free port and resolves once it
 * listens. The child is `node` itself, not a wrapper, so a signal sent to `pid` reaches the
 * server and SIGKILL kills it mid-request like a crash would.
 */
export async function startServer(
  env: Record<string, string>,
  options: { viaNpm?: boolean } = {},
): Promise<ServerProcess> {
  // `viaNpm`: what a user types, `npm start`, in a process group of its own (as a terminal or
  // a supervisor gives it); `pid` is then npm's, and the group's id.
  const [command, args] = options.viaNpm
    ? ["npm", ["start", "--silent"]]
    : [process.execPath, ["--import", "tsx", "src/main.ts"]];
  const child = spawn(command, args, {
    detached: options.viaNpm === true,
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: "0",
      HOST: "127.0.0.1",
      LOG_LEVEL: "info",
      MIGRATE_ON_START: "false",
      // Suites share the run's database: a server's cleanup would delete other suites' expired
      // records under them. Suites about the job turn it on.
      CLEANUP_INTERVAL_MS: "0",
      ...env,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`server did not start in 30 s:\n${output.join("\n")}`));
    }, 30_000);
    const onLine = (line: string) => {
      output.push(line);
      if (!line.startsWith("{")) return;
      try {
        const entry = JSON.parse(line) as { msg?: string; url?: string };
        if (entry.msg === "listening" && entry.url) {
          clearTimeout(timer);
          resolve(entry.url);
        }
      } catch {
        // not a log line
      }
    };
    collectLines(child, onLine);
    child.once("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output.join("\n")}`));
    });
  });
  return {
    url,
    pid: child.pid as number,
    output,
    async waitForOutput(text, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const line = output.find((l) => l.includes(text));
        if (line !== undefined) return line;
        if (Date.now() > deadline) throw new Error(`no output line with "${text}"`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    async kill(signal = "SIGTERM") {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      const exited = once(child, "exit");
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

function collectLines(child: ChildProcess, onLine: (line: string) => void) {
  for (const stream of [child.stdout, child.stderr]) {
    let buffered = "";
    stream?.setEncoding("utf8");
    stream?.on("data", (chunk: string) => {
      buffered += chunk;
      const lines = buffered.split("\n");
      buffered = lines.pop() ?? "";
      for (const line of lines) onLine(line);
    });
  }
}
