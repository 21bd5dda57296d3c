/** Reads all of standard input (a terminal is told what is expected on stderr). */
export async function readStdin(prompt = 'input JSON (then Ctrl-D): '): Promise<Buffer> {
  if (process.stdin.isTTY) process.stderr.write(prompt);
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin as AsyncIterable<Buffer>) chunks.push(chunk);
  return Buffer.concat(chunks);
}
