import { chmodSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { REPO_ROOT } from '../lab/netns.js';
import { runHost, type Dockerd } from './dockerd.js';

/**
 * Base images built on this machine, since no registry is reachable: Debian 12 from Debian's own
 * mirror (debootstrap, as apt uses it), this machine's Node.js 20 and npm, and its npm cache, so
 * that `npm ci` in a build with no network installs exactly the lockfile's packages.
 */

/** debootstrap's output, kept between runs (it is the slow part): .lab-tmp/ is ignored by git. */
const CACHE_DIR = join(REPO_ROOT, '.lab-tmp', 'docker-base');
/** Bump when the recipe changes, so that tarballs of the old one are rebuilt. */
const RECIPE = 1;

export interface DebianVariant {
  name: string;
  /** Packages beyond minbase. */
  include: string[];
}
export const MINBASE: DebianVariant = { name: 'minbase', include: [] };
export const WITH_SYSTEMD: DebianVariant = { name: 'systemd', include: ['systemd', 'systemd-sysv'] };

/** The mirror apt uses here (deb822 or one-line sources), else Debian's default. */
function debianMirror(): string {
  for (const [file, pattern] of [
    ['/etc/apt/sources.list.d/debian.sources', /^URIs:\s*(\S+)/m],
    ['/etc/apt/sources.list', /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/m],
  ] as const) {
    const m = existsSync(file) ? pattern.exec(readFileSync(file, 'utf8')) : null;
    if (m) return m[1]!;
  }
  return 'http://deb.debian.org/debian';
}

/** A tarball of a Debian 12 root file system (docs, locales and apt lists left out), made once. */
export async function debianRootfs(variant: DebianVariant): Promise<string> {
  const tarball = join(CACHE_DIR, `debian12-${variant.name}-r${RECIPE}.tar`);
  if (existsSync(tarball)) return tarball;
  mkdirSync(CACHE_DIR, { recursive: true });
  const root = mkdtempSync(join(CACHE_DIR, `root-${variant.name}-`));
  chmodSync(root, 0o755); // it becomes the image's "/": mkdtemp's 0700 would lock every other user out
  try {
    const include = variant.include.length > 0 ? [`--include=${variant.include.join(',')}`] : [];
    await runHost('/usr/sbin/debootstrap', ['--variant=minbase', ...include, 'bookworm', root, debianMirror()], 600_000);
    for (const dir of ['usr/share/doc', 'usr/share/man', 'usr/share/locale', 'usr/share/info', 'var/lib/apt/lists', 'var/cache/apt']) {
      rmSync(join(root, dir), { recursive: true, force: true });
      mkdirSync(join(root, dir), { recursive: true });
    }
    await runHost('tar', ['-C', root, '-cf', `${tarball}.part`, '.'], 120_000);
    renameSync(`${tarball}.part`, tarball);
    return tarball;
  } finally {
    rmSync(root, { recursive: true, force: true });
    rmSync(`${tarball}.part`, { force: true });
  }
}

/** `docker build` with no network and no pulls: every base must already be in the daemon. */
export async function build(dockerd: Dockerd, tag: string, context: string, buildArgs: Record<string, string> = {}): Promise<void> {
  const args = Object.entries(buildArgs).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`]);
  await dockerd.docker(['build', '--network=none', '--pull=false', '--progress=plain', ...args, '-t', tag, context], { timeoutMs: 600_000 });
}

/**
 * `tag`: the Debian root of `variant` (an imported root file system has no PATH: it is set), this
 * machine's node and npm in /usr/local (as the official node images have them), its npm cache with npm set offline, and a `node` user with uid 1000
 * (as the official images have it, and the Dockerfile expects).
 */
export async function nodeBaseImage(dockerd: Dockerd, tag: string, variant: DebianVariant, workDir: string): Promise<void> {
  const os = `${tag}-os`;
  await dockerd.docker(['import', await debianRootfs(variant), os], { timeoutMs: 300_000 });
  const context = join(workDir, `context-${variant.name}`);
  rmSync(context, { recursive: true, force: true });
  const rootfs = join(context, 'rootfs');
  // npm's own package directory, from the npm on PATH (…/node_modules/npm/bin/npm-cli.js).
  const npmDir = dirname(dirname(realpathSync((await runHost('sh', ['-c', 'command -v npm'], 10_000)).stdout.trim())));
  const npmCache = (await runHost('npm', ['config', 'get', 'cache'], 30_000)).stdout.trim();
  mkdirSync(join(rootfs, 'usr/local/bin'), { recursive: true });
  mkdirSync(join(rootfs, 'usr/local/lib/node_modules'), { recursive: true });
  mkdirSync(join(rootfs, 'root/.npm'), { recursive: true });
  cpSync(process.execPath, join(rootfs, 'usr/local/bin/node'));
  cpSync(npmDir, join(rootfs, 'usr/local/lib/node_modules/npm'), { recursive: true, verbatimSymlinks: true });
  cpSync(join(npmCache, '_cacache'), join(rootfs, 'root/.npm/_cacache'), { recursive: true, verbatimSymlinks: true });
  writeFileSync(
    join(context, 'Dockerfile'),
    `FROM ${os}
COPY rootfs/ /
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \\
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --create-home --shell /bin/sh node
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    npm_config_offline=true npm_config_update_notifier=false npm_config_fund=false npm_config_audit=false
`,
  );
  await build(dockerd, tag, context);
  rmSync(context, { recursive: true, force: true });
}
