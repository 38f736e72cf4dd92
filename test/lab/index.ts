/** One import for lab tests: `import { createLab, describeLab, applyCensor } from '../lab/index.js'`. */
export * from './netns.js';
export * from './proc.js';
export * from './censor.js';
export * from './ca.js';
export * from './dns-server.js';
export * from './describe-lab.js';
export * from './tools.js';
