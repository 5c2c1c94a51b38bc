// An independent consistency check of a persistent COW image (the kernel's format), stricter
// than the store's own loader, which like the kernel checks nothing: every record points at a
// data chunk inside the image (not the header, not a metadata area), no origin chunk or COW
// chunk appears twice, new_chunk values follow the allocation order exactly (2, 3, ... skipping
// metadata chunks: ordered group commit leaves no holes), nothing but zeroes follows the
// terminator, and a full area is followed by another area inside the image.
import { SNAP_MAGIC, areaLocation, decodeHeader, exceptionsPerArea, scanArea, skipMetadataChunk, RECORD_BYTES, SECTOR_BYTES, FIRST_DATA_CHUNK } from '../../src/store/persistent/format.ts';

export interface CowCheck {
  /** blank: magic 0 (nothing ever committed durably); invalid: valid=0 in the header. */
  state: 'blank' | 'invalid' | 'valid';
  records: number;
  problems: string[];
}

function isZero(buf: Uint8Array): boolean {
  for (const b of buf) if (b !== 0) return false;
  return true;
}

/** Check `image` (the whole COW) holding a store of `chunkSectors` for an origin of `originChunks` chunks. */
export function checkCowImage(image: Buffer, chunkSectors: number, originChunks: number): CowCheck {
  const header = decodeHeader(image);
  if (header.magic === 0) return { state: 'blank', records: 0, problems: isZero(image.subarray(0, 16)) ? [] : ['magic 0 but header not zero'] };
  const problems: string[] = [];
  if (header.magic !== SNAP_MAGIC) problems.push(`bad magic 0x${header.magic.toString(16)}`);
  if (header.version !== 1) problems.push(`version ${header.version}`);
  if (header.chunkSectors !== chunkSectors) problems.push(`chunk size ${header.chunkSectors}, expected ${chunkSectors}`);
  if (problems.length > 0) return { state: 'valid', records: 0, problems };
  if (header.valid === 0) return { state: 'invalid', records: 0, problems };
  const chunkBytes = chunkSectors * SECTOR_BYTES;
  const imageChunks = Math.floor(image.length / chunkBytes);
  const epa = exceptionsPerArea(chunkSectors);
  const olds = new Set<number>();
  let expected = FIRST_DATA_CHUNK;
  let records = 0;
  for (let area = 0; ; area++) {
    const at = areaLocation(area, epa);
    if (at >= imageChunks) {
      problems.push(`area ${area} (chunk ${at}) lies past the end of the COW (${imageChunks} chunks)`);
      break;
    }
    const buf = image.subarray(at * chunkBytes, (at + 1) * chunkBytes);
    const length = scanArea(buf, (oldChunk, newChunk) => {
      const where = `area ${area} record ${records}`;
      if (newChunk !== expected) problems.push(`${where}: new_chunk ${newChunk}, allocation order expects ${expected}`);
      if (newChunk >= imageChunks) problems.push(`${where}: new_chunk ${newChunk} past the end (${imageChunks} chunks)`);
      if (newChunk % (epa + 1) === 1) problems.push(`${where}: new_chunk ${newChunk} is a metadata chunk`);
      if (oldChunk >= originChunks) problems.push(`${where}: old_chunk ${oldChunk} past the origin (${originChunks} chunks)`);
      if (olds.has(oldChunk)) problems.push(`${where}: old_chunk ${oldChunk} appears twice`);
      olds.add(oldChunk);
      expected = skipMetadataChunk(Math.max(expected, newChunk) + 1, epa);
      records++;
    });
    if (length < epa) {
      if (!isZero(buf.subarray((length + 1) * RECORD_BYTES))) problems.push(`area ${area}: non-zero bytes after the terminator (record ${length})`);
      break;
    }
  }
  return { state: 'valid', records, problems: problems.slice(0, 20) };
}
