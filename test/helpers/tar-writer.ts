import { gzipSync } from 'node:zlib';

/** One archive entry: a regular file unless `type` says otherwise (tar type flag). */
export interface TarInput {
  name: string;
  body: string | Buffer;
  type?: string;
}

/**
 * A minimal ustar writer for archives the real `opa build` would never produce (tampered,
 * hostile): correct headers and checksums, gzipped.
 */
export function tarGz(entries: readonly TarInput[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const body = Buffer.isBuffer(e.body) ? e.body : Buffer.from(e.body);
    const h = Buffer.alloc(512);
    h.write(e.name, 0, 100, 'utf8');
    h.write('0000644\0', 100);
    h.write('0000000\0', 108);
    h.write('0000000\0', 116);
    h.write(body.length.toString(8).padStart(11, '0') + '\0', 124);
    h.write('00000000000\0', 136);
    h.write(e.type ?? '0', 156);
    h.write('ustar\0', 257);
    h.write('00', 263);
    h.fill(' ', 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148);
    blocks.push(h, body, Buffer.alloc((512 - (body.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return gzipSync(Buffer.concat(blocks));
}

/** Rebuilds an archive from a file map (as `parseBundle` returns it). */
export function tarFromFiles(files: ReadonlyMap<string, Buffer>): Buffer {
  return tarGz([...files].map(([name, body]) => ({ name: `/${name}`, body })));
}
