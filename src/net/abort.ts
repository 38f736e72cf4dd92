/**
 * A promise that also settles when a signal fires: the one way callprobe waits on a socket event
 * under a phase's AbortSignal. `start` wires up its listeners and returns what undoes them; that
 * cleanup runs exactly once, however the promise settles (resolved, rejected, or aborted with the
 * signal's reason, which is the phase's timeout or the run's cancellation).
 */
export function abortable<T>(
  signal: AbortSignal,
  start: (resolve: (value: T) => void, reject: (err: unknown) => void) => (() => void) | void,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    let cleanup: (() => void) | void = undefined;
    let settled = false;
    const finish = (settle: () => void): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      cleanup?.();
      settle();
    };
    const onAbort = (): void => finish(() => reject(signal.reason));
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      cleanup = start(
        (value) => finish(() => resolve(value)),
        (err) => finish(() => reject(err)),
      );
    } catch (err) {
      finish(() => reject(err));
    }
    // start() may have settled synchronously, before its cleanup was known.
    if (settled) cleanup?.();
  });
}
