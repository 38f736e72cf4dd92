/**
 * Did the censor key on what the packets look like, or on where they go? The media phase sends
 * the same shapes (each with its bit-inverted control) at the same moments to reflectors in
 * different places, a foreign one and a domestic one; this reads the matrix of outcomes. Wehe
 * varies only the shape on one path (Li et al., SIGCOMM 2019); varying the destination as well is
 * what separates the two kinds of rule seen in Russia in 2025-2026: STUN recognised per flow
 * (a shape rule) and flows to foreign hosting frozen whatever they carry (a destination rule).
 * Pure: outcomes in, a diagnosis out.
 *
 * - `protocol_classification`: a service shape failed towards the foreign and the domestic
 *   reflector alike while its control passed on the same paths: the bytes decide.
 * - `destination_policy`: every stream to the foreign reflector(s) failed, the controls too, while
 *   every stream to the domestic one(s) passed: the destination decides.
 * - `none`: every stream passed everywhere.
 * - `inconclusive`, with why: no reflector at home or none abroad, no controls, the domestic path
 *   failing too (this vantage's UDP is broken), or failures that fit neither pattern.
 */
import type { FailureCode } from '../failure.js';

export const DIAGNOSES = ['protocol_classification', 'destination_policy', 'none', 'inconclusive'] as const;
export type Diagnosis = (typeof DIAGNOSES)[number];

/** One shape towards one reflector: its service stream's outcome, and its control's (undefined without a control). */
export interface MatrixCell {
  readonly shape: string;
  readonly destination: string;
  readonly location: 'domestic' | 'foreign';
  readonly service: FailureCode | null;
  readonly control?: FailureCode | null;
}

export interface DiagnosisResult {
  readonly result: Diagnosis;
  readonly reason: string;
  /** For protocol_classification: the shapes the path tells apart. */
  readonly classifiedShapes?: readonly string[];
}

const streamsOf = (c: MatrixCell): Array<FailureCode | null> => (c.control === undefined ? [c.service] : [c.service, c.control]);
const allPass = (cells: readonly MatrixCell[]): boolean => cells.every((c) => streamsOf(c).every((f) => f === null));
const allFail = (cells: readonly MatrixCell[]): boolean => cells.every((c) => streamsOf(c).every((f) => f !== null));
const names = (cells: readonly MatrixCell[]): string => [...new Set(cells.map((c) => c.destination))].join(', ');

export function diagnose(cells: readonly MatrixCell[]): DiagnosisResult {
  const foreign = cells.filter((c) => c.location === 'foreign');
  const domestic = cells.filter((c) => c.location === 'domestic');
  if (foreign.length === 0 || domestic.length === 0) {
    const only = foreign.length === 0 ? 'domestic' : 'foreign';
    return {
      result: allPass(cells) ? 'none' : 'inconclusive',
      reason: `the streams went only to ${only} reflectors (${names(cells)}): telling a shape rule from a destination rule needs one abroad and one at home`,
    };
  }
  if (allPass(cells)) return { result: 'none', reason: 'every shape, and every control, reached every reflector' };
  if (allFail(domestic)) {
    const controls = domestic.some((c) => c.control !== undefined) ? ', the controls included' : '';
    return {
      result: 'inconclusive',
      reason: `every stream to the domestic reflector (${names(domestic)}) failed too${controls}: the vantage's own UDP path is broken, not a policy on destinations or shapes`,
    };
  }
  if (allFail(foreign) && allPass(domestic)) {
    const controls = foreign.some((c) => c.control !== undefined) ? ', the bit-inverted controls included,' : '';
    return {
      result: 'destination_policy',
      reason: `every shape${controls} failed towards the foreign reflector (${names(foreign)}) while all passed towards the domestic one (${names(domestic)}): the path is cut by where the packets go, not by what they look like`,
    };
  }
  if (cells.every((c) => c.control === undefined)) {
    return { result: 'inconclusive', reason: 'some streams failed, but without bit-inverted controls a shape rule cannot be told from a path problem' };
  }
  const shapes = [...new Set(cells.map((c) => c.shape))];
  const classified = shapes.filter((s) => {
    const of = cells.filter((c) => c.shape === s);
    return of.some((c) => c.location === 'foreign') && of.some((c) => c.location === 'domestic') && of.every((c) => c.service !== null && c.control === null);
  });
  if (classified.length > 0) {
    return {
      result: 'protocol_classification',
      reason: `the ${classified.join(', ')} stream${classified.length > 1 ? 's' : ''} failed towards the foreign and the domestic reflector while the bit-inverted control${classified.length > 1 ? 's' : ''} passed on the same paths: the packets are told apart by what they look like`,
      classifiedShapes: classified,
    };
  }
  const failed = cells.flatMap((c) => [
    ...(c.service !== null ? [`${c.shape} to ${c.destination} (${c.location}): ${c.service}`] : []),
    ...(c.control !== undefined && c.control !== null ? [`the control of ${c.shape} to ${c.destination} (${c.location}): ${c.control}`] : []),
  ]);
  return { result: 'inconclusive', reason: `the failures fit neither a shape rule nor a destination rule: ${failed.join('; ')}` };
}
