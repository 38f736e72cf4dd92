import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    setupFiles: ['test/setup/network-fence.ts'],
    // Lab tests start real servers in network namespaces: allow them time, and keep the
    // two-core machines from running more than two heavy files at once.
    testTimeout: 30_000,
    hookTimeout: 60_000,
    maxWorkers: 2,
    reporters: ['default'],
  },
});
