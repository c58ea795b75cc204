package dev.pubsubshm.spark.sink;

import java.util.function.LongSupplier;

import org.apache.spark.unsafe.Platform;

import dev.pubsubshm.ring.ProcessIdentity;
import dev.pubsubshm.ring.RingFile;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * The single producer of an OUTBOUND ring (FORMAT.md section 6): the DATA record layout of
 * section 3, written by the JVM.
 *
 * <p><b>Private claims.</b> {@link #claim(int)} reserves room for the largest record the
 * caller may write but publishes nothing: {@code tail_position} only moves at
 * {@link #commit}, after the record's {@code length} was release-stored, and then only by the
 * record's actual (aligned) size. A consumer therefore never sees a half-written record, a
 * producer that dies mid-batch leaves no trace in the ring, and an abandoned claim needs no
 * PADDING record. PADDING is written (and published) only to skip the end of the ring area
 * when the largest record would not fit before it.
 *
 * <p>Not thread-safe: one writer thread; {@link #heartbeat} may be called from any thread while
 * the caller holds a reference to the ring.
 */
final class OutboundRing
{
    private final RingFile ring;
    private final long address;
    private final long capacity;
    private final long mask;
    private final int maxRecord;
    private final LongSupplier nanoClock;
    private final LongSupplier unixNanoClock;
    private long tail;
    private long nextBatchId = 1;
    private long claimed = -1;
    private int claimedLength;

    /**
     * Attaches as the producer.
     *
     * @param ring an OUTBOUND ring the caller holds a reference to (for as long as this object is used).
     */
    OutboundRing(final RingFile ring)
    {
        this(ring, ProcessIdentity.self(), System::nanoTime, () -> System.currentTimeMillis() * 1_000_000L);
    }

    /**
     * Attaches as the producer with a given identity and clocks (golden files).
     *
     * @param ring          an OUTBOUND ring the caller holds a reference to.
     * @param identity      the identity stored in the producer block.
     * @param nanoClock     heartbeats ({@link System#nanoTime()}).
     * @param unixNanoClock {@code produced_unix_ns} of the records.
     */
    OutboundRing(final RingFile ring, final ProcessIdentity identity, final LongSupplier nanoClock,
        final LongSupplier unixNanoClock)
    {
        this.nanoClock = nanoClock;
        this.unixNanoClock = unixNanoClock;
        if (ring.kind() != KIND_OUTBOUND)
        {
            throw new IllegalArgumentException("\"" + ring.path() + "\" is a " + kindName(ring.kind()) + " ring, not OUTBOUND");
        }
        this.ring = ring;
        this.address = ring.address();
        this.capacity = ring.capacity();
        this.mask = capacity - 1;
        this.maxRecord = ring.maxRecordLength();
        this.tail = ring.tailPosition();
        if (tail != 0)
        {
            throw new IllegalStateException("OUTBOUND ring \"" + ring.path() + "\" is not fresh (tail_position=" + tail +
                "): pullerd creates one per writer");
        }
        ring.attach(RingFile.Side.PRODUCER, identity, nanoClock.getAsLong());
    }

    /** @return the ring. */
    RingFile ring()
    {
        return ring;
    }

    /** @return the largest record the ring takes (header included). */
    int maxRecordLength()
    {
        return maxRecord;
    }

    /** @return the batch id the next commit gets. */
    long nextBatchId()
    {
        return nextBatchId;
    }

    /**
     * Tries to reserve {@code maxLength} contiguous bytes at the tail for one record, first
     * publishing a PADDING record over the end of the ring area if the record would cross it.
     *
     * @param maxLength the largest record length (header included) the caller will commit.
     * @return the native address of the record, or 0 if the consumer has not released enough
     * space yet (try again later).
     */
    long claim(final int maxLength)
    {
        if (claimed >= 0)
        {
            throw new IllegalStateException("the previous claim at position " + claimed + " was neither committed nor abandoned");
        }
        if (maxLength < RECORD_HEADER_LENGTH || maxLength > maxRecord)
        {
            throw new IllegalArgumentException("record of " + maxLength + " bytes: want " + RECORD_HEADER_LENGTH +
                ".." + maxRecord + " (max_record_length of \"" + ring.path() + "\")");
        }
        final long aligned = align64(maxLength);
        while (true)
        {
            final long head = ring.headPosition();
            final long free = capacity - (tail - head);
            final long index = tail & mask;
            final long toEnd = capacity - index;
            if (aligned > toEnd)
            {
                if (free < toEnd)
                {
                    return 0;
                }
                writePadding(toEnd);
                continue;
            }
            if (free < aligned)
            {
                return 0;
            }
            final int offset = ring.offsetOf(tail);
            ring.putIntRelease(offset + RECORD_STATE_OFFSET, 0); // clear the previous lap's state
            claimed = tail;
            claimedLength = maxLength;
            return address + offset;
        }
    }

    private void writePadding(final long length)
    {
        final int offset = ring.offsetOf(tail);
        final long a = address + offset;
        Platform.setMemory(a + RECORD_TYPE_OFFSET, (byte)0, RECORD_HEADER_LENGTH - RECORD_TYPE_OFFSET);
        Platform.putInt(null, a + RECORD_TYPE_OFFSET, TYPE_PADDING);
        Platform.putInt(null, a + RECORD_STATE_OFFSET, STATE_RELEASED);
        Platform.putLong(null, a + RECORD_PRODUCED_UNIX_NS_OFFSET, unixNanoClock.getAsLong());
        Platform.putLong(null, a + RECORD_POSITION_OFFSET, tail);
        ring.putIntRelease(offset + RECORD_LENGTH_OFFSET, (int)length);
        tail += length;
        ring.putLongRelease(TAIL_POSITION_OFFSET, tail);
    }

    /**
     * Publishes the claimed record as one ARROW record batch: writes the header, release-stores
     * {@code length}, then {@code tail_position}.
     *
     * @param rows       the batch's rows.
     * @param metaLength bytes of the Arrow message prefix at offset 64.
     * @param bodyOffset offset of the body in the record.
     * @param bodyLength bytes of the body.
     * @return the batch id.
     */
    long commit(final int rows, final int metaLength, final int bodyOffset, final long bodyLength)
    {
        if (claimed < 0)
        {
            throw new IllegalStateException("commit without a claim");
        }
        final long length = bodyOffset + bodyLength;
        if (length > claimedLength)
        {
            throw new IllegalStateException("record of " + length + " bytes exceeds its claim of " + claimedLength + " bytes");
        }
        final int offset = ring.offsetOf(claimed);
        final long a = address + offset;
        final long id = nextBatchId++;
        Platform.putInt(null, a + RECORD_TYPE_OFFSET, TYPE_ARROW);
        Platform.putLong(null, a + RECORD_BATCH_ID_OFFSET, id);
        Platform.putInt(null, a + RECORD_ROW_COUNT_OFFSET, rows);
        Platform.putInt(null, a + RECORD_META_OFFSET_OFFSET, RECORD_HEADER_LENGTH);
        Platform.putInt(null, a + RECORD_META_LENGTH_OFFSET, metaLength);
        Platform.putInt(null, a + RECORD_BODY_OFFSET_OFFSET, bodyOffset);
        Platform.putInt(null, a + RECORD_RESERVED_OFFSET, 0);
        Platform.putLong(null, a + RECORD_BODY_LENGTH_OFFSET, bodyLength);
        Platform.putLong(null, a + RECORD_PRODUCED_UNIX_NS_OFFSET, unixNanoClock.getAsLong());
        Platform.putLong(null, a + RECORD_POSITION_OFFSET, claimed);
        ring.putIntRelease(offset + RECORD_LENGTH_OFFSET, (int)length);
        tail = claimed + align64(length);
        ring.putLongRelease(TAIL_POSITION_OFFSET, tail);
        claimed = -1;
        return id;
    }

    /** Gives up the current claim (nothing was published). */
    void abandon()
    {
        claimed = -1;
    }

    /** @return bytes the consumer has not released yet. */
    long used()
    {
        return tail - ring.headPosition();
    }

    /** Stamps the producer heartbeat. */
    void heartbeat()
    {
        ring.heartbeat(RingFile.Side.PRODUCER, nanoClock.getAsLong());
    }

    /** Sets {@code producer_closed}: the writer is done (committed or aborted). */
    void markClosed()
    {
        ring.markClosed(RingFile.Side.PRODUCER);
    }
}
