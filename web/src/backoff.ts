// Reconnect delays: exponential from `base` ms, capped, with jitter so clients cut at once by a
// flag flip do not all come back in the same millisecond.
export function backoffDelay(
  attempt: number,
  base = 250,
  cap = 5000,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(cap, base * 2 ** Math.max(0, attempt))
  return Math.round(ceiling / 2 + (random() * ceiling) / 2)
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
