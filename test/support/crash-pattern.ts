// Sector tags for the crash tests: every 512-byte sector a test writes is filled with 16-byte
// slots naming the write (a unique write id) and the sector's own number, so a sector read back
// after a crash is either exactly one write's data for exactly that sector, or garbage (-1).

export const SECTOR = 512;
const MAGIC = 0x4b534e43; // "CNSK"
const SLOTS = SECTOR / 16;

/** Fill `buf` (starting at device sector `firstSector`) with write `writeId`'s tags. */
export function tagSectors(buf: Buffer, firstSector: number, writeId: number): Buffer {
  for (let s = 0; s < buf.length / SECTOR; s++) {
    const sector = firstSector + s;
    const check = (MAGIC ^ writeId ^ sector) >>> 0;
    for (let slot = 0; slot < SLOTS; slot++) {
      const at = s * SECTOR + slot * 16;
      buf.writeUInt32LE(MAGIC, at);
      buf.writeUInt32LE(writeId, at + 4);
      buf.writeUInt32LE(sector, at + 8);
      buf.writeUInt32LE(check, at + 12);
    }
  }
  return buf;
}

/** A fresh buffer of `sectors` sectors tagged with `writeId`. */
export function taggedBuffer(firstSector: number, sectors: number, writeId: number): Buffer {
  return tagSectors(Buffer.allocUnsafe(sectors * SECTOR), firstSector, writeId);
}

/** The write id held by sector `index` of `buf` (device sector `firstSector + index`), or -1 if it is not a whole, intact tag. */
export function readTag(buf: Buffer, index: number, firstSector: number): number {
  const sector = firstSector + index;
  const base = index * SECTOR;
  const writeId = buf.readUInt32LE(base + 4);
  const check = (MAGIC ^ writeId ^ sector) >>> 0;
  for (let slot = 0; slot < SLOTS; slot++) {
    const at = base + slot * 16;
    if (buf.readUInt32LE(at) !== MAGIC || buf.readUInt32LE(at + 4) !== writeId) return -1;
    if (buf.readUInt32LE(at + 8) !== sector || buf.readUInt32LE(at + 12) !== check) return -1;
  }
  return writeId;
}
