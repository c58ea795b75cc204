package dev.pubsubshm.ring;

import java.nio.file.Path;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static dev.pubsubshm.ring.RingFormatException.Kind;

/**
 * A read-only walker over the records of a DATA ring (FORMAT.md section 3), for readers that
 * are not the ring's single polling consumer: the Spark driver, which looks at record headers
 * ({@code batch_id}, {@code row_count}, {@code length}) from {@code head_position} to
 * {@code tail_position} to plan micro-batches, and the Spark tasks, which find a planned batch
 * by walking from the head and read it in place. Unlike {@link DataRingReader} it does not
 * attach as the consumer, keeps no shared read cursor, and never releases anything by itself.
 *
 * <p><b>Stale records.</b> A record below {@code head_position} has been released and the
 * producer may overwrite it at any moment. {@link #next} therefore reads the header, then
 * re-reads the head: if the head has passed the record, what was read may be torn and
 * {@link Status#STALE} is returned instead (the caller restarts from the new head). A caller
 * that must read a record's payload keeps the head from passing it by other means (the Spark
 * layer's per-JVM pins, released at commit).
 *
 * <p><b>Releasing.</b> {@link #tryMarkReleased}, {@link #clearReleased} and
 * {@link #advanceHead(long)} implement the consumer's releasing rules for a consumer whose
 * records are released in batches (at commit) rather than as they are polled: the RELEASED
 * bit is claimed by compare-and-swap, so that of several processes committing the same batch
 * exactly one wins, and the head only passes a contiguous run of released records below a
 * caller-given limit and below {@code tail_position}, never a record that is being written.
 *
 * <p><b>Memory.</b> The scanner holds its own {@linkplain RingFile#retain() reference} to the
 * ring until {@link #close()}. Not thread-safe (the cursor), except the static-like release
 * methods, which only use atomics on the mapping.
 */
public final class DataRingScanner implements AutoCloseable
{
    /** What {@link #next} found at the cursor. */
    public enum Status
    {
        /** A complete ARROW or RAW record; the view is filled and the cursor moved past it. */
        RECORD,
        /** The cursor is at {@code tail_position}: nothing more has been published. */
        END,
        /** The record at the cursor is still being written (negative {@code length}). */
        IN_PROGRESS,
        /** {@code head_position} has passed the cursor: the record may have been overwritten. */
        STALE
    }

    private final RingFile ring;
    private final Path path;
    private final long capacity;
    private final long mask;
    private final int maxRecordLength;
    private final RecordHeaderChecks checks;
    private long cursor;
    private long lastBatchId;
    private boolean closed;

    /**
     * Starts a scanner at the ring's current {@code head_position}.
     *
     * @param ring a DATA (or OUTBOUND) ring the caller holds a reference to; retained.
     * @throws IllegalArgumentException if {@code ring} is a COMMIT ring.
     * @throws RingFormatException      {@link Kind#CLOSED} if the ring is unmapped.
     */
    public DataRingScanner(final RingFile ring)
    {
        if (ring.kind() == KIND_COMMIT)
        {
            throw new IllegalArgumentException("\"" + ring.path() + "\" is a COMMIT ring, not a DATA ring");
        }
        this.ring = ring.retain();
        this.path = ring.path();
        this.capacity = ring.capacity();
        this.mask = capacity - 1;
        this.maxRecordLength = ring.maxRecordLength();
        this.checks = new RecordHeaderChecks(ring, path);
        this.cursor = ring.headPosition();
    }

    /**
     * The ring scanned.
     *
     * @return the ring.
     */
    public RingFile ring()
    {
        return ring;
    }

    /**
     * Moves the cursor to {@code position}, which must be the start of a record (or the tail),
     * and forgets the batch id continuity check.
     *
     * @param position a stream position, a multiple of 64.
     * @throws IllegalArgumentException if {@code position} is negative or not aligned.
     */
    public void seek(final long position)
    {
        if (position < 0 || (position & (RECORD_ALIGNMENT - 1)) != 0)
        {
            throw new IllegalArgumentException("seek to position=" + position + " in \"" + path +
                "\": must be >= 0 and a multiple of " + RECORD_ALIGNMENT);
        }
        cursor = position;
        lastBatchId = 0;
    }

    /**
     * Moves the cursor to the current {@code head_position}.
     *
     * @return the head position.
     */
    public long seekToHead()
    {
        final long head = ring.headPosition();
        seek(head);
        return head;
    }

    /**
     * The cursor: position of the next record {@link #next} reads.
     *
     * @return a stream position.
     */
    public long cursor()
    {
        return cursor;
    }

    /**
     * Reads the record at the cursor into {@code into} and moves past it. PADDING records are
     * skipped. A record whose {@code batch_id} does not follow the previous one read since the
     * last {@link #seek} is reported as corrupt.
     *
     * @param into the view to fill on {@link Status#RECORD}.
     * @return what was found; the cursor moves only on {@link Status#RECORD} (and over padding).
     * @throws RingFormatException {@link Kind#CORRUPT_RECORD} if a record at or above the head
     *                             breaks a rule of FORMAT.md, {@link Kind#CLOSED} if closed.
     */
    public Status next(final DataRecord into)
    {
        if (closed)
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "next on a closed scanner");
        }
        final RingFile ring = this.ring;
        while (true)
        {
            final long p = cursor;
            final long tail = ring.tailPosition();
            if (p >= tail)
            {
                return ring.headPosition() > p ? Status.STALE : Status.END;
            }
            if (ring.headPosition() > p)
            {
                return Status.STALE;
            }
            final int offset = ring.offsetOf(p);
            final int length = ring.getIntAcquire(offset + RECORD_LENGTH_OFFSET);
            final int type;
            try
            {
                if (length <= 0)
                {
                    if (length == 0)
                    {
                        throw RingFormatException.record(path, p, "length", 0, "0 never appears below tail_position=" + tail);
                    }
                    checkLengthBounds(p, length, -(long)length, tail);
                    if (ring.headPosition() > p)
                    {
                        return Status.STALE;
                    }
                    final int state = ring.getIntVolatile(offset + RECORD_STATE_OFFSET);
                    if ((state & (STATE_RELEASED | STATE_ABORTED)) == (STATE_RELEASED | STATE_ABORTED))
                    {
                        // Half-written by a producer that died; the polling consumer skipped it.
                        cursor = p + align64(-(long)length);
                        continue;
                    }
                    return Status.IN_PROGRESS;
                }
                type = validate(p, offset, length, tail);
            }
            catch (final RingFormatException ex)
            {
                if (ring.headPosition() > p)
                {
                    return Status.STALE; // read while the producer reused the bytes
                }
                throw ex;
            }
            if (ring.headPosition() > p)
            {
                return Status.STALE;
            }
            final long next = p + align64(length);
            if (type == TYPE_PADDING)
            {
                cursor = next;
                continue;
            }
            final long batchId = ring.getLong(offset + RECORD_BATCH_ID_OFFSET);
            if (lastBatchId != 0 && batchId != lastBatchId + 1)
            {
                throw RingFormatException.record(path, p, "batch_id", batchId,
                    "must follow the previous record's batch_id " + lastBatchId + " (consecutive across ARROW and RAW records)");
            }
            into.set(
                ring,
                p,
                offset,
                length,
                type,
                batchId,
                ring.getInt(offset + RECORD_ROW_COUNT_OFFSET),
                ring.getInt(offset + RECORD_STATE_OFFSET),
                ring.getInt(offset + RECORD_META_OFFSET_OFFSET),
                ring.getInt(offset + RECORD_META_LENGTH_OFFSET),
                ring.getInt(offset + RECORD_BODY_OFFSET_OFFSET),
                ring.getLong(offset + RECORD_BODY_LENGTH_OFFSET),
                ring.getLong(offset + RECORD_PRODUCED_UNIX_NS_OFFSET));
            if (ring.headPosition() > p)
            {
                return Status.STALE;
            }
            lastBatchId = batchId;
            cursor = next;
            return Status.RECORD;
        }
    }

    private void checkLengthBounds(final long p, final int length, final long absLength, final long tail)
    {
        checks.checkLengthBounds(p, length, absLength, tail);
    }

    private int validate(final long p, final int offset, final int length, final long tail)
    {
        return checks.validate(p, offset, length, tail, 0);
    }

    /**
     * Claims the RELEASED bit of a record read by {@link #next}: sets it by compare-and-swap
     * unless it is already set. Of several threads or processes releasing the same record,
     * exactly one gets {@code true}; that one owns the record's commit.
     *
     * @param record a record read by this scanner, still at or above the head.
     * @return {@code true} if this call set the bit, {@code false} if it was already set.
     */
    public boolean tryMarkReleased(final DataRecord record)
    {
        final int stateOffset = ring.offsetOf(record.position()) + RECORD_STATE_OFFSET;
        while (true)
        {
            final int state = ring.getIntVolatile(stateOffset);
            if ((state & STATE_RELEASED) != 0)
            {
                return false;
            }
            if (ring.compareAndSetInt(stateOffset, state, state | STATE_RELEASED))
            {
                return true;
            }
        }
    }

    /**
     * Gives back a RELEASED bit this process claimed with {@link #tryMarkReleased} but could
     * not act on (e.g. its commit record could not be written). Only valid while the head has
     * not passed the record, which the caller guarantees by not advancing it in between.
     *
     * @param position the record's position.
     */
    public void clearReleased(final long position)
    {
        final int stateOffset = ring.offsetOf(position) + RECORD_STATE_OFFSET;
        while (true)
        {
            final int state = ring.getIntVolatile(stateOffset);
            if ((state & STATE_RELEASED) == 0 || ring.compareAndSetInt(stateOffset, state, state & ~STATE_RELEASED))
            {
                return;
            }
        }
    }

    /**
     * Moves {@code head_position} over the contiguous run of released records (RELEASED set,
     * or PADDING, or RELEASED|ABORTED half-written ones) that starts at the head, by
     * compare-and-swap, never to or past {@code limit}, never past {@code tail_position}, and
     * never past a record that is still being written. Below the tail every record belongs to
     * the current lap (the producer clears {@code state} and stores a negative length before it
     * moves the tail), so a RELEASED bit left over from an earlier lap is never taken for a
     * release. Safe from any thread and process.
     *
     * @param limit an exclusive bound: the position of the first record the caller still
     *              needs (a record start), or {@link Long#MAX_VALUE} for none.
     * @return the head after the call.
     */
    public long advanceHead(final long limit)
    {
        final RingFile ring = this.ring;
        long h = ring.getLongVolatile(HEAD_POSITION_OFFSET);
        while (true)
        {
            final long bound = Math.min(limit, ring.tailPosition());
            if (h >= bound)
            {
                return h;
            }
            final int offset = ring.offsetOf(h);
            final int length = ring.getIntVolatile(offset + RECORD_LENGTH_OFFSET);
            final int state = ring.getIntVolatile(offset + RECORD_STATE_OFFSET);
            long span = 0;
            if (length > 0 && ring.getLong(offset + RECORD_POSITION_OFFSET) == h &&
                ((state & STATE_RELEASED) != 0 || ring.getInt(offset + RECORD_TYPE_OFFSET) == TYPE_PADDING))
            {
                span = length;
            }
            else if (length < 0 && (state & (STATE_RELEASED | STATE_ABORTED)) == (STATE_RELEASED | STATE_ABORTED))
            {
                span = -(long)length;
            }
            final long next = h + align64(span);
            if (span < RECORD_HEADER_LENGTH || next > bound)
            {
                // Not releasable yet, or read after another thread moved the head on and the
                // producer reused the bytes: decide on a fresh head.
                final long fresh = ring.getLongVolatile(HEAD_POSITION_OFFSET);
                if (fresh == h)
                {
                    return h;
                }
                h = fresh;
                continue;
            }
            if (ring.compareAndSetLong(HEAD_POSITION_OFFSET, h, next))
            {
                h = next;
            }
            else
            {
                h = ring.getLongVolatile(HEAD_POSITION_OFFSET);
            }
        }
    }

    /** Drops the scanner's reference to the ring. Idempotent. */
    @Override
    public void close()
    {
        if (!closed)
        {
            closed = true;
            ring.release();
        }
    }
}
