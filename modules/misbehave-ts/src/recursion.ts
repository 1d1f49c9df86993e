// Recursion lives in its own file: imports between a module's files bundle in.

/** Recurses without bound (the sum keeps it from being a tail call). */
export function deeper(n: number): number {
  return deeper(n + 1) + n;
}
