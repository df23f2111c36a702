import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "./helpers/server-process.js";

/**
 * `npm run bench` as a new user runs it, with no DATABASE_URL (an embedded PostgreSQL of its
 * own), briefly: every phase runs and passes its own checks (each 201 has its order and record,
 * each commit its order, each replay the stored body). What it measures is for docs/, not for
 * a test to assert.
 */
describe("npm run bench", () => {
  it("runs every phase on the embedded default and finds nothing wrong", async () => {
    const env = { ...process.env };
    delete env.DATABASE_URL;
    const { stdout } = await promisify(execFile)(
      "npm",
      [
        "run",
        "--silent",
        "bench",
        "--",
        "--duration=1",
        "--slice=1",
        "--warmup=0",
        "--connections=4",
        "--json",
      ],
      { cwd: REPO_ROOT, env, maxBuffer: 64 * 1024 * 1024 },
    );
    const report = JSON.parse(stdout) as {
      info: { postgres: string };
      phases: { id: string; count: number; problems: string[]; notes: string[] }[];
      ratios: { name: string; value: number }[];
      targets: { name: string; measured?: number }[];
    };
    expect(report.phases.map((phase) => phase.id)).toEqual([
      "healthz",
      "replay",
      "replay-spread",
      "create",
      "naive",
      "pgbench-create",
      "pgbench-bare",
      "direct",
      "bare",
      "record-first",
    ]);
    for (const phase of report.phases) {
      expect({ id: phase.id, problems: phase.problems }).toEqual({ id: phase.id, problems: [] });
      expect(phase.count).toBeGreaterThan(0);
    }
    expect(report.ratios.map((ratio) => ratio.name)).toHaveLength(4);
    for (const target of report.targets) expect(target.measured).toBeGreaterThan(0);
  }, 180_000);
});
