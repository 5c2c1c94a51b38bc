// Split a byte range into an unaligned head, an aligned body and an unaligned tail
// (the shape every read-modify-write layer needs).

export interface Piece {
  /** Byte offset of this piece. */
  offset: number;
  length: number;
  /** Offset of this piece within the caller's buffer. */
  bufOffset: number;
}

/**
 * Cut [offset, offset+length) at every multiple of `unit` (a power of two). Yields one piece
 * per unit touched; pieces that are not a whole unit are the head and tail.
 */
export function* splitByUnit(offset: number, length: number, unit: number): Generator<Piece> {
  let pos = offset;
  const end = offset + length;
  while (pos < end) {
    const unitEnd = (Math.floor(pos / unit) + 1) * unit;
    const pieceEnd = Math.min(end, unitEnd);
    yield { offset: pos, length: pieceEnd - pos, bufOffset: pos - offset };
    pos = pieceEnd;
  }
}

/** True when [offset, offset+length) starts and ends on multiples of `unit`. */
export function isAligned(offset: number, length: number, unit: number): boolean {
  return offset % unit === 0 && length % unit === 0;
}
