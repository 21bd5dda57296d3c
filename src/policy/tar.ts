import { gunzipSync } from 'node:zlib';

/** One regular file from a tar archive, its path normalised (no leading `/` or `./`). */
export interface TarEntry {
  path: string;
  data: Buffer;
}

const BLOCK = 512;

/**
 * Reads a gzipped tar (as `opa build` writes it) fully in memory. Only regular files and
 * directories are accepted; links, devices and paths escaping the root are refused, and the
 * uncompressed size is capped so a hostile bundle cannot exhaust memory.
 */
export function readTarGz(bytes: Buffer, maxBytes: number): TarEntry[] {
  let tar: Buffer;
  try {
    tar = gunzipSync(bytes, { maxOutputLength: maxBytes });
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new TarError(e.code === 'ERR_BUFFER_TOO_LARGE' ? `larger than ${maxBytes} bytes uncompressed` : `not gzip: ${e.message}`);
  }
  const entries: TarEntry[] = [];
  let offset = 0;
  let longName: string | undefined;
  while (offset + BLOCK <= tar.length) {
    const header = tar.subarray(offset, offset + BLOCK);
    if (header.every((b) => b === 0)) break;
    if (!checksumOk(header)) throw new TarError(`bad header checksum at byte ${offset}`);
    const size = octal(header.subarray(124, 136));
    const type = String.fromCharCode(header[156] ?? 0);
    const body = tar.subarray(offset + BLOCK, offset + BLOCK + size);
    if (body.length !== size) throw new TarError('truncated archive');
    offset += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      longName = paxPath(body) ?? longName;
      continue;
    }
    if (type === 'L') {
      longName = cString(body);
      continue;
    }
    if (type === 'g' || type === '5') continue;
    if (type !== '0' && type !== '\0') throw new TarError(`unsupported entry type '${type}'`);
    const name = longName ?? ustarName(header);
    longName = undefined;
    entries.push({ path: normalise(name), data: Buffer.from(body) });
  }
  return entries;
}

/** The archive is not a readable gzipped tar. */
export class TarError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarError';
  }
}

function normalise(name: string): string {
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..')) throw new TarError(`unsafe path '${name}'`);
  return parts.join('/');
}

function ustarName(header: Buffer): string {
  const name = cString(header.subarray(0, 100));
  const magic = header.subarray(257, 262).toString('latin1');
  const prefix = magic === 'ustar' ? cString(header.subarray(345, 500)) : '';
  return prefix ? `${prefix}/${name}` : name;
}

function cString(b: Buffer): string {
  const end = b.indexOf(0);
  return b.subarray(0, end === -1 ? b.length : end).toString('utf8');
}

function octal(b: Buffer): number {
  const text = cString(b).trim();
  if (!/^[0-7]*$/.test(text)) throw new TarError('bad size field');
  return text ? parseInt(text, 8) : 0;
}

function checksumOk(header: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (header[i] ?? 0);
  return sum === octal(header.subarray(148, 156));
}

// PAX records: "<len> <key>=<value>\n"; only `path` matters here.
function paxPath(body: Buffer): string | undefined {
  let path: string | undefined;
  for (const line of body.toString('utf8').split('\n')) {
    const m = /^\d+ path=(.*)$/.exec(line);
    if (m) path = m[1];
  }
  return path;
}
