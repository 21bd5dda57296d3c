/** The message of a thrown value, for log lines: an Error's message, or the value as text. */
export function errorMessage(err: unknown): string {
  return String((err as Error | undefined)?.message ?? err);
}
