import { describe, expect, it } from 'vitest';
import { diagnose, type MatrixCell } from '../../src/media/diagnosis.js';

const cell = (shape: string, destination: string, location: 'domestic' | 'foreign', service: MatrixCell['service'], control?: MatrixCell['control']): MatrixCell => ({
  shape,
  destination,
  location,
  service,
  ...(control !== undefined ? { control } : {}),
});

describe('diagnose', () => {
  it('protocol_classification: a service shape fails on both paths while its control passes on both', () => {
    const d = diagnose([
      cell('rtp', 'ams', 'foreign', 'media_no_packets', null),
      cell('rtp', 'msk', 'domestic', 'media_no_packets', null),
      cell('whatsapp-stun', 'ams', 'foreign', null, null),
      cell('whatsapp-stun', 'msk', 'domestic', null, null),
    ]);
    expect(d).toEqual({
      result: 'protocol_classification',
      reason: 'the rtp stream failed towards the foreign and the domestic reflector while the bit-inverted control passed on the same paths: the packets are told apart by what they look like',
      classifiedShapes: ['rtp'],
    });
  });

  it('destination_policy: everything to the foreign reflector fails, controls included, everything domestic passes', () => {
    const d = diagnose([
      cell('rtp', 'ams', 'foreign', 'stream_cutoff', 'stream_cutoff'),
      cell('rtp', 'msk', 'domestic', null, null),
      cell('whatsapp', 'ams', 'foreign', 'stream_cutoff', 'stream_cutoff'),
      cell('whatsapp', 'msk', 'domestic', null, null),
    ]);
    expect(d).toEqual({
      result: 'destination_policy',
      reason:
        'every shape, the bit-inverted controls included, failed towards the foreign reflector (ams) while all passed towards the domestic one (msk): the path is cut by where the packets go, not by what they look like',
    });
  });

  it('none; and inconclusive with why: one place only, the domestic path broken, no controls, or neither pattern', () => {
    expect(diagnose([cell('rtp', 'ams', 'foreign', null, null), cell('rtp', 'msk', 'domestic', null, null)]).result).toBe('none');
    expect(diagnose([cell('rtp', 'ams', 'foreign', 'media_no_packets', null)])).toEqual({
      result: 'inconclusive',
      reason: 'the streams went only to foreign reflectors (ams): telling a shape rule from a destination rule needs one abroad and one at home',
    });
    expect(diagnose([cell('rtp', 'ams', 'foreign', 'media_no_packets', 'media_no_packets'), cell('rtp', 'msk', 'domestic', 'media_no_packets', 'media_no_packets')]).reason).toMatch(
      /^every stream to the domestic reflector \(msk\) failed too/,
    );
    expect(
      diagnose([
        cell('rtp', 'ams', 'foreign', 'media_no_packets'),
        cell('rtp', 'msk', 'domestic', null),
        cell('whatsapp', 'ams', 'foreign', null),
        cell('whatsapp', 'msk', 'domestic', 'media_degraded'),
      ]).reason,
    ).toBe(
      'some streams failed, but without bit-inverted controls a shape rule cannot be told from a path problem',
    );
    // A shape failing abroad only, its control passing: classification on foreign paths, or something else: not one of the two.
    expect(diagnose([cell('rtp', 'ams', 'foreign', 'media_no_packets', null), cell('rtp', 'msk', 'domestic', null, null)])).toEqual({
      result: 'inconclusive',
      reason: 'the failures fit neither a shape rule nor a destination rule: rtp to ams (foreign): media_no_packets',
    });
  });
});
