// The recognisable data the crash child writes into each COW chunk before committing it, so the
// parent can tell a chunk whose data was written from one that never was.

const MAGIC = 0x48535243; // "CRSH"

/** A chunk filled with 16-byte blocks: magic, old chunk, new chunk, old ^ new ^ magic. */
export function crashPattern(chunkBytes: number, oldChunk: number, newChunk: number): Buffer {
  const buf = Buffer.alloc(chunkBytes);
  for (let at = 0; at < chunkBytes; at += 16) {
    buf.writeUInt32LE(MAGIC, at);
    buf.writeUInt32LE(oldChunk, at + 4);
    buf.writeUInt32LE(newChunk, at + 8);
    buf.writeUInt32LE((oldChunk ^ newChunk ^ MAGIC) >>> 0, at + 12);
  }
  return buf;
}
