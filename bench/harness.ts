/**
 * The contract between benchmark files and the runner. Each `bench/*.bench.ts` exports
 * `suites`; every suite runs its cases side by side in one benny suite, so a case and the
 * baseline it names are measured in the same process, back to back.
 */
export interface BenchCase {
  name: string;
  /** Name of the case in the same suite this one is compared against (ratio = hz / baseline hz). */
  baseline?: string;
  fn: () => void | Promise<void>;
}

export interface BenchSuite {
  suite: string;
  /** Part of the fast subset run by `npm run bench -- --quick`. */
  quick?: boolean;
  setup?(): void | Promise<void>;
  teardown?(): void | Promise<void>;
  cases: BenchCase[];
}

export interface BenchResult {
  suite: string;
  name: string;
  hz: number;
  baseline?: string;
  ratio?: number;
}
