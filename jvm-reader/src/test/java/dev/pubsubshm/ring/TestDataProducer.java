package dev.pubsubshm.ring;

import java.nio.ByteBuffer;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * A Java implementation of the DATA ring publication protocol (FORMAT.md section 3), for
 * tests only: pullerd (Go) is the producer in production. Single-threaded, like the real one.
 */
final class TestDataProducer implements AutoCloseable
{
    private final RingFile ring;
    private final ByteBuffer buffer;
    private final long capacity;
    private final long mask;
    private long tail;
    private long nextBatchId = 1;
    private long unixNs = 1_700_000_000_000_000_000L;

    /** Attaches to {@code ring} as producer with this process's identity (a live producer). */
    TestDataProducer(final RingFile ring)
    {
        this(ring, ProcessIdentity.self());
    }

    TestDataProducer(final RingFile ring, final ProcessIdentity identity)
    {
        this.ring = ring.retain();
        this.buffer = ring.duplicateBuffer();
        this.capacity = ring.capacity();
        this.mask = capacity - 1;
        this.tail = ring.tailPosition();
        ring.attach(RingFile.Side.PRODUCER, identity, System.nanoTime());
    }

    long tail()
    {
        return tail;
    }

    long nextBatchId()
    {
        return nextBatchId;
    }

    /**
     * Claims a record: PADDING first if it does not fit before the end of the ring area, then
     * {@code length = -length} and {@code tail += align64(length)} (release).
     *
     * @return the record's position.
     * @throws IllegalStateException if the ring has no room.
     */
    long claim(final int length)
    {
        final long aligned = align64(length);
        final long head = ring.headPosition();
        final long toEnd = capacity - (tail & mask);
        if (aligned > toEnd)
        {
            if (capacity - (tail - head) < toEnd + aligned)
            {
                throw new IllegalStateException("test ring full: tail=" + tail + " head=" + head + " need=" + (toEnd + aligned));
            }
            final int off = ring.offsetOf(tail);
            clearHeader(off);
            ring.putInt(off + RECORD_TYPE_OFFSET, TYPE_PADDING);
            ring.putInt(off + RECORD_STATE_OFFSET, STATE_RELEASED);
            ring.putLong(off + RECORD_POSITION_OFFSET, tail);
            ring.putIntRelease(off + RECORD_LENGTH_OFFSET, (int)toEnd);
            tail += toEnd;
            ring.putLongRelease(TAIL_POSITION_OFFSET, tail);
        }
        else if (capacity - (tail - head) < aligned)
        {
            throw new IllegalStateException("test ring full: tail=" + tail + " head=" + head + " need=" + aligned);
        }
        final long position = tail;
        final int off = ring.offsetOf(position);
        ring.putIntRelease(off + RECORD_STATE_OFFSET, 0);
        ring.putIntRelease(off + RECORD_LENGTH_OFFSET, -length);
        tail += aligned;
        ring.putLongRelease(TAIL_POSITION_OFFSET, tail);
        return position;
    }

    /** Writes the header of a claimed RAW record and its body, without publishing it. */
    void fillRaw(final long position, final byte[] body)
    {
        final int off = ring.offsetOf(position);
        fillHeader(off, position, TYPE_RAW, nextBatchId++, 1, 0, RECORD_HEADER_LENGTH, body.length);
        buffer.put(off + RECORD_HEADER_LENGTH, body);
    }

    /** Release-stores the positive length: the record becomes visible. */
    void publish(final long position, final int length)
    {
        ring.putIntRelease(ring.offsetOf(position) + RECORD_LENGTH_OFFSET, length);
    }

    /** Claims, fills and publishes a RAW record. Allocates nothing. */
    long writeRaw(final byte[] body)
    {
        final int length = RECORD_HEADER_LENGTH + body.length;
        final long position = claim(length);
        fillRaw(position, body);
        publish(position, length);
        return position;
    }

    /**
     * Claims, fills and publishes an ARROW-shaped record: a valid encapsulated prefix of
     * {@code metaLength} bytes (continuation, size, zeros) and {@code bodyLength} body bytes
     * set to {@code (i & 0xFF)}.
     */
    long writeArrow(final int metaLength, final int bodyLength, final int rowCount)
    {
        final int bodyOffset = (int)align64(RECORD_HEADER_LENGTH + metaLength);
        final int length = bodyOffset + bodyLength;
        final long position = claim(length);
        final int off = ring.offsetOf(position);
        fillHeader(off, position, TYPE_ARROW, nextBatchId++, rowCount, metaLength, bodyOffset, bodyLength);
        ring.putInt(off + RECORD_HEADER_LENGTH, ARROW_CONTINUATION);
        ring.putInt(off + RECORD_HEADER_LENGTH + 4, metaLength - 8);
        for (int i = 8; i < bodyOffset - RECORD_HEADER_LENGTH; i++)
        {
            buffer.put(off + RECORD_HEADER_LENGTH + i, (byte)0);
        }
        for (int i = 0; i < bodyLength; i++)
        {
            buffer.put(off + bodyOffset + i, (byte)i);
        }
        publish(position, length);
        return position;
    }

    private void fillHeader(
        final int off, final long position, final int type, final long batchId, final int rowCount,
        final int metaLength, final int bodyOffset, final long bodyLength)
    {
        ring.putInt(off + RECORD_TYPE_OFFSET, type);
        ring.putLong(off + RECORD_BATCH_ID_OFFSET, batchId);
        ring.putInt(off + RECORD_ROW_COUNT_OFFSET, rowCount);
        ring.putInt(off + RECORD_META_OFFSET_OFFSET, RECORD_HEADER_LENGTH);
        ring.putInt(off + RECORD_META_LENGTH_OFFSET, metaLength);
        ring.putInt(off + RECORD_BODY_OFFSET_OFFSET, bodyOffset);
        ring.putInt(off + RECORD_RESERVED_OFFSET, 0);
        ring.putLong(off + RECORD_BODY_LENGTH_OFFSET, bodyLength);
        ring.putLong(off + RECORD_PRODUCED_UNIX_NS_OFFSET, unixNs++);
        ring.putLong(off + RECORD_POSITION_OFFSET, position);
    }

    private void clearHeader(final int off)
    {
        for (int i = RECORD_TYPE_OFFSET; i < RECORD_HEADER_LENGTH; i += 4)
        {
            ring.putInt(off + i, 0);
        }
    }

    void heartbeat()
    {
        ring.heartbeat(RingFile.Side.PRODUCER, System.nanoTime());
    }

    @Override
    public void close()
    {
        ring.markClosed(RingFile.Side.PRODUCER);
        ring.release();
    }
}
