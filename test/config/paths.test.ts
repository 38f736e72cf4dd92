import { describe, expect, it } from 'vitest';
import { defaultDataDir } from '../../src/config/paths.js';

describe('defaultDataDir', () => {
  it('prefers systemd StateDirectory, then /var/lib for root, then XDG state for users', () => {
    expect(defaultDataDir({ STATE_DIRECTORY: '/var/lib/private/callprobe:/other' }, 1000)).toBe('/var/lib/private/callprobe');
    expect(defaultDataDir({}, 0)).toBe('/var/lib/callprobe');
    expect(defaultDataDir({ XDG_STATE_HOME: '/home/v/.state' }, 1000)).toBe('/home/v/.state/callprobe');
    expect(defaultDataDir({ HOME: '/home/v' }, 1000)).toMatch(/\/\.local\/state\/callprobe$/);
  });
});
