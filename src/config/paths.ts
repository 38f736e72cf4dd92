import { homedir } from 'node:os';
import { join } from 'node:path';

/**
 * Where records go when the config names no dataDir: systemd's StateDirectory= when run as a unit
 * (it sets STATE_DIRECTORY), /var/lib/callprobe for root, else the XDG state directory, so that
 * `npx callprobe run` works for any user without extra setup.
 */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env, uid = process.getuid?.() ?? 0): string {
  const state = env.STATE_DIRECTORY?.split(':')[0];
  if (state) return state;
  if (uid === 0) return '/var/lib/callprobe';
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'callprobe');
}
