import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { durationWords } from '../sinks/words.js';
import { statusClient } from './client.js';
import { STYLE } from './style.js';

/**
 * The status page's static files, all served by the daemon itself (never a CDN: the page must work
 * offline, over SSH port forwarding, and load nothing from anywhere else): uPlot's prebuilt script
 * and stylesheet from its npm package, the page's own script and stylesheet. Each path carries a
 * hash of its content, so it may be cached for good and a new version is a new path.
 */
export interface Asset {
  type: string;
  body: Buffer;
}

export interface AssetPaths {
  uplotJs: string;
  uplotCss: string;
  js: string;
  css: string;
}

export interface Assets {
  paths: AssetPaths;
  get(path: string): Asset | undefined;
}

let built: Assets | null = null;

/** Read once per process: uPlot's files are 53 KB, the page's own a few. */
export function assets(): Assets {
  if (built) return built;
  const require = createRequire(import.meta.url);
  const uplot = (file: string): Buffer => readFileSync(require.resolve(`uplot/dist/${file}`));
  const files: Record<keyof AssetPaths, [string, string, Buffer]> = {
    uplotJs: ['uplot', 'js', uplot('uPlot.iife.min.js')],
    uplotCss: ['uplot', 'css', uplot('uPlot.min.css')],
    // The durations helper is the server's own, passed in: both say "3 h 20 min" the same way.
    js: ['status', 'js', Buffer.from(`"use strict";\n(${statusClient.toString()})(${durationWords.toString()});\n`)],
    css: ['status', 'css', Buffer.from(STYLE)],
  };
  const byPath = new Map<string, Asset>();
  const paths = {} as AssetPaths;
  for (const [key, [name, ext, body]] of Object.entries(files) as Array<[keyof AssetPaths, [string, string, Buffer]]>) {
    const path = `/assets/${name}.${createHash('sha256').update(body).digest('hex').slice(0, 12)}.${ext}`;
    paths[key] = path;
    byPath.set(path, { type: ext === 'js' ? 'text/javascript; charset=utf-8' : 'text/css; charset=utf-8', body });
  }
  built = { paths, get: (path) => byPath.get(path) };
  return built;
}
