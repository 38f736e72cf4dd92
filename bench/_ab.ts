import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createLab, createLabCa, startEchoServer } from '../test/lab/index.js';
const variants: Array<[string, string[], NodeJS.ProcessEnv]> = [
  ['defaults', [], {}],
  ['semi1', [], { NODE_OPTIONS: '--max-semi-space-size=1', MALLOC_ARENA_MAX: '2' }],
  ['semi1+pool1', [], { NODE_OPTIONS: '--max-semi-space-size=1 --v8-pool-size=1', MALLOC_ARENA_MAX: '2' }],
  ['semi1+noopt', ['--no-opt'], { NODE_OPTIONS: '--max-semi-space-size=1', MALLOC_ARENA_MAX: '2' }],
];
const lab = await createLab();
try {
  const ca = await createLabCa(join(lab.tmpDir, 'ca'));
  const cert = await ca.issue(['tls.lab.test'], { ips: ['198.18.2.2'] });
  writeFileSync(join(lab.tmpDir, 'ca.pem'), ca.caCertPem);
  await startEchoServer(lab, { listeners: [{ kind: 'tls', port: 8443, cert: cert.certPath, key: cert.keyPath }] });
  writeFileSync(join(lab.tmpDir, 'bench.yaml'), 'service: bench\ntargets:\n  - name: tls\n    host: 198.18.2.2\n    port: 8443\n    sni: tls.lab.test\n    phases: [tcp, tls]\n');
  writeFileSync(join(lab.tmpDir, 'cp.yaml'), `embeddedCatalogues: false\ncatalogues: [bench.yaml]\ndns: { resolver: "198.18.2.2:53" }\ntls: { extraCa: [ca.pem] }\nsafety: { allow: [127.0.0.0/8, "::1/128", 198.18.0.0/15] }\n`);
  const results: Record<string, number[]> = {};
  for (let round = 0; round < 3; round++) {
    const f = await lab.run('client', process.execPath, ['bench/driver-tls-floor.mjs', '--host', '198.18.2.2', '--port', '8443', '--servername', 'tls.lab.test', '--ca', join(lab.tmpDir, 'ca.pem'), '--count', '1500', '--concurrency', '8'], { timeoutMs: 300_000 });
    const floor = JSON.parse(f.stdout.trim()).cpuSeconds as number;
    for (const [name, flags, env] of variants) {
      const r = await lab.run('client', process.execPath, [...flags, 'bench/driver-callprobe.mjs', '--config', join(lab.tmpDir, 'cp.yaml'), '--spec', 'bench/tls', '--count', '1500', '--concurrency', '8'], { timeoutMs: 300_000, env: { ...process.env, ...env } });
      (results[name] ??= []).push(floor / (JSON.parse(r.stdout.trim()).cpuSeconds as number));
    }
  }
  for (const [name, rs] of Object.entries(results)) console.log(name.padEnd(14), 'callprobe/floor', rs.map((x) => x.toFixed(3)).join(' '), 'median', rs.sort()[1]!.toFixed(3));
} finally {
  await lab.destroy();
}
