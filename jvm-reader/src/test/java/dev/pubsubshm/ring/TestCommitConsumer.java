package dev.pubsubshm.ring;

import java.util.function.Consumer;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * A Java implementation of the COMMIT ring consumption protocol (FORMAT.md section 4), for
 * tests only: ackd (Go) is the consumer in production. Single-threaded.
 */
final class TestCommitConsumer
{
    /** One consumed record, copied out of the slot. */
    record Commit(long position, int type, long first, long last, int partition, int pid, long instance, long producedNs)
    {
    }

    private final RingFile ring;

    TestCommitConsumer(final RingFile ring)
    {
        this.ring = ring;
    }

    /**
     * Consumes every published record at the head: validates it, hands it over, zeroes bytes
     * 4..63, stores {@code length = 0} and release-stores {@code head + 64}.
     *
     * @return records consumed.
     */
    int drain(final Consumer<Commit> sink)
    {
        int n = 0;
        while (true)
        {
            final long head = ring.headPosition();
            if (head >= ring.tailPosition())
            {
                return n;
            }
            final int off = ring.offsetOf(head);
            final int length = ring.getIntAcquire(off + COMMIT_LENGTH_OFFSET);
            if (length != COMMIT_RECORD_LENGTH)
            {
                return n; // 0 or -64: a producer is writing
            }
            final Commit c = read(ring, off);
            if (c.position != head)
            {
                throw new IllegalStateException("commit slot at head=" + head + " has position=" + c.position);
            }
            if (c.type != COMMIT_TYPE_PADDING)
            {
                sink.accept(c);
            }
            for (int i = COMMIT_TYPE_OFFSET; i < COMMIT_RECORD_LENGTH; i += 4)
            {
                ring.putInt(off + i, 0);
            }
            ring.putIntRelease(off + COMMIT_LENGTH_OFFSET, 0);
            ring.putLongRelease(HEAD_POSITION_OFFSET, head + COMMIT_RECORD_LENGTH);
            n++;
        }
    }

    /** The length a consumer stores in a slot it abandons (FORMAT.md section 4). */
    static final int ABANDONED = -1;

    /**
     * Plays a consumer that gave up on the slot at {@code position} (which must be the head):
     * compare-and-swaps its length from {@code expected} (0 or -64) to -1, zeroes the slot,
     * stores {@code length = 0} and advances the head past it.
     */
    static boolean abandon(final RingFile ring, final long position, final int expected)
    {
        if (ring.headPosition() != position)
        {
            throw new IllegalStateException("abandon at position=" + position + " but head=" + ring.headPosition());
        }
        final int off = ring.offsetOf(position);
        if (!ring.compareAndSetInt(off + COMMIT_LENGTH_OFFSET, expected, ABANDONED))
        {
            return false;
        }
        for (int i = COMMIT_TYPE_OFFSET; i < COMMIT_RECORD_LENGTH; i += 4)
        {
            ring.putInt(off + i, 0);
        }
        ring.putIntRelease(off + COMMIT_LENGTH_OFFSET, 0);
        ring.putLongRelease(HEAD_POSITION_OFFSET, position + COMMIT_RECORD_LENGTH);
        return true;
    }

    static Commit read(final RingFile ring, final int off)
    {
        return new Commit(
            ring.getLong(off + COMMIT_POSITION_OFFSET),
            ring.getInt(off + COMMIT_TYPE_OFFSET),
            ring.getLong(off + COMMIT_FIRST_BATCH_ID_OFFSET),
            ring.getLong(off + COMMIT_LAST_BATCH_ID_OFFSET),
            ring.getInt(off + COMMIT_PARTITION_OFFSET),
            ring.getInt(off + COMMIT_PRODUCER_PID_OFFSET),
            ring.getLong(off + COMMIT_DATA_RING_INSTANCE_ID_OFFSET),
            ring.getLong(off + COMMIT_PRODUCED_UNIX_NS_OFFSET));
    }
}
