import { describe, expect, it } from 'vitest';
import { abortable } from '../../src/net/abort.js';

describe('abortable', () => {
  it('resolves with the value and runs the cleanup exactly once', async () => {
    let cleanups = 0;
    const value = await abortable<number>(new AbortController().signal, (resolve) => {
      setTimeout(() => resolve(7), 1);
      return () => cleanups++;
    });
    expect(value).toBe(7);
    expect(cleanups).toBe(1);
  });

  it('rejects with the signal reason when aborted, and cleans up once even if the start settles later', async () => {
    const controller = new AbortController();
    let cleanups = 0;
    let late: (v: number) => void = () => {};
    const p = abortable<number>(controller.signal, (resolve) => {
      late = resolve;
      return () => cleanups++;
    });
    controller.abort(new Error('phase timeout'));
    await expect(p).rejects.toThrow('phase timeout');
    late(1);
    expect(cleanups).toBe(1);
  });

  it('does not start at all under an aborted signal', async () => {
    const controller = new AbortController();
    controller.abort(new Error('gone'));
    let started = false;
    await expect(abortable(controller.signal, () => void (started = true))).rejects.toThrow('gone');
    expect(started).toBe(false);
  });

  it('turns a throwing start into a rejection and still cleans up a synchronous settle', async () => {
    await expect(
      abortable(new AbortController().signal, () => {
        throw new RangeError('bad');
      }),
    ).rejects.toBeInstanceOf(RangeError);
    let cleanups = 0;
    await expect(
      abortable<number>(new AbortController().signal, (resolve) => {
        resolve(3);
        return () => cleanups++;
      }),
    ).resolves.toBe(3);
    expect(cleanups).toBe(1);
  });
});
