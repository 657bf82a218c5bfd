// A barrier for tests: hold a port's method until the test lets it go, to act while an effect is in flight.

/**
 * Holds every call of `obj[name]` until `release()`: `reached` resolves at the first call. A barrier for
 * "while this effect is in flight" that no machine load can reorder.
 */
export function gate<T extends object>(
  obj: T,
  name: keyof T & string,
): { reached: Promise<void>; release(): void } {
  const original = obj[name] as unknown as (...args: unknown[]) => unknown;
  let reach!: () => void;
  let open!: () => void;
  const reached = new Promise<void>((r) => {
    reach = r;
  });
  const opened = new Promise<void>((r) => {
    open = r;
  });
  (obj as Record<string, unknown>)[name] = async (...args: unknown[]) => {
    reach();
    await opened;
    return original.apply(obj, args);
  };
  return {
    reached,
    release() {
      (obj as Record<string, unknown>)[name] = original;
      open();
    },
  };
}
