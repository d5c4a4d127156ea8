/**
 * replication/block-id — request ids that match an answer to its request.
 * The low two bits say which part of the data path asked (application write,
 * resync, verify, application read served by the peer), so the packet dispatcher routes answers without a lookup.
 * Ids wrap below 2^32 so any wire codec can carry them.
 */

export const BlockIdTag = { app: 0, resync: 1, verify: 2, read: 3 } as const;
export type BlockIdTag = (typeof BlockIdTag)[keyof typeof BlockIdTag];

const TAG_BITS = 2;
const TAG_MASK = (1 << TAG_BITS) - 1;
/** Sequence numbers wrap here; far more than any in-flight limit. */
const SEQUENCE_WRAP = 2 ** (32 - TAG_BITS);

export function blockIdTag(blockId: number): BlockIdTag {
  return (blockId & TAG_MASK) as BlockIdTag;
}

export class BlockIdAllocator {
  private sequence = 0;
  constructor(private readonly tag: BlockIdTag) {}

  next(): number {
    this.sequence = (this.sequence + 1) % SEQUENCE_WRAP;
    return this.sequence * (TAG_MASK + 1) + this.tag;
  }
}
