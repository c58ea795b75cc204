package dev.pubsubshm.ring;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static dev.pubsubshm.ring.RingFormatException.Kind;

/**
 * The consumer of a DATA ring (FORMAT.md section 3): polls complete records in order, and
 * releases them, in any order and from any thread, so the producer can reuse the space.
 *
 * <p><b>Threads.</b> {@link #poll(DataRecord)} and {@link #close()} belong to one thread (the
 * poller); {@link #release(long)} and {@link #heartbeat()} may be called from any thread,
 * also after {@code close()} for records polled before it, as long as the ring is still
 * mapped. One reader per ring per JVM: it keeps the only read cursor.
 *
 * <p><b>Memory.</b> The reader holds its own {@linkplain RingFile#retain() reference} to the
 * ring from construction until {@link #close()}, so the caller may close its
 * {@link RingFile} at any time. A polled record's payload is the consumer's until it is
 * released; after that the producer may overwrite it.
 *
 * <p><b>Checks.</b> Every header field of a record is validated against FORMAT.md before the
 * payload is touched, and no offset is ever used before it is proven inside the ring area;
 * a violation throws {@link Kind#CORRUPT_RECORD} naming the position, field and value, and
 * leaves the cursor on the bad record. The flatbuffer inside an ARROW record (buffer bounds,
 * field-node lengths) is not parsed here; the Arrow layer checks it before building vectors.
 *
 * <p><b>Liveness.</b> The reader stamps the consumer heartbeat on {@code poll} at most every
 * 100 ms; a consumer that may not poll for longer than the liveness timeout must call
 * {@link #heartbeat()} from a timer at least every {@link RingFile#HEARTBEAT_INTERVAL_NS}. A
 * record whose length stays negative (half-written) while the producer is dead or closed is
 * skipped and marked RELEASED|ABORTED.
 */
public final class DataRingReader implements AutoCloseable
{
    private static final long POLL_HEARTBEAT_INTERVAL_NS = TimeUnit.MILLISECONDS.toNanos(100);
    private static final VarHandle PUBLISHED_CURSOR;
    private static final VarHandle CLOSED;

    static
    {
        try
        {
            final MethodHandles.Lookup lookup = MethodHandles.lookup();
            PUBLISHED_CURSOR = lookup.findVarHandle(DataRingReader.class, "publishedCursor", long.class);
            CLOSED = lookup.findVarHandle(DataRingReader.class, "closed", int.class);
        }
        catch (final ReflectiveOperationException ex)
        {
            throw new ExceptionInInitializerError(ex);
        }
    }

    private final RingFile ring;
    private final Path path;
    private final long capacity;
    private final long mask;
    private final int headerLength;
    private final int maxRecordLength;
    private final RecordHeaderChecks checks;
    private final long livenessTimeoutNs;
    private final long livenessCheckIntervalNs;
    private final DataRecord defaultView = new DataRecord();

    // Poller-thread state.
    private long cursor;
    private long lastBatchId;
    private long lastHeartbeatNs;
    private long stuckPosition = -1;
    private long lastLivenessCheckNs;
    private long abortedCount;

    /** The cursor as seen by releasing threads: records below it have been polled or skipped. */
    @SuppressWarnings("unused") // accessed through PUBLISHED_CURSOR
    private volatile long publishedCursor;
    @SuppressWarnings("unused") // accessed through CLOSED
    private volatile int closed;

    /**
     * Attaches as the consumer of a DATA (or OUTBOUND) ring with the default liveness timeout.
     *
     * @param ring a ring the caller holds a reference to.
     * @throws RingFormatException {@link Kind#CLOSED} if the ring is unmapped,
     *                             {@link Kind#PERMISSION} if another live process is attached as consumer.
     */
    public DataRingReader(final RingFile ring)
    {
        this(ring, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS);
    }

    /**
     * Attaches as the consumer of a DATA (or OUTBOUND) ring: stores this process's identity
     * and heartbeat in the consumer block, clears {@code consumer_closed}, and starts reading
     * at {@code head_position}.
     *
     * @param ring              a ring the caller holds a reference to.
     * @param livenessTimeoutNs how stale the producer's heartbeat may get before it is
     *                          considered dead ({@link RingFile#DEFAULT_LIVENESS_TIMEOUT_NS}).
     * @throws RingFormatException {@link Kind#CLOSED} if the ring is unmapped,
     *                             {@link Kind#PERMISSION} if another live process is attached as consumer.
     */
    public DataRingReader(final RingFile ring, final long livenessTimeoutNs)
    {
        if (ring.kind() == KIND_COMMIT)
        {
            throw new IllegalArgumentException("\"" + ring.path() + "\" is a COMMIT ring; use CommitRingWriter");
        }
        if (livenessTimeoutNs <= 0)
        {
            throw new IllegalArgumentException("livenessTimeoutNs=" + livenessTimeoutNs + " must be > 0");
        }
        ring.retain();
        try
        {
            this.ring = ring;
            this.path = ring.path();
            this.capacity = ring.capacity();
            this.mask = capacity - 1;
            this.headerLength = ring.headerLength();
            this.maxRecordLength = ring.maxRecordLength();
            this.checks = new RecordHeaderChecks(ring, path);
            this.livenessTimeoutNs = livenessTimeoutNs;
            this.livenessCheckIntervalNs = Math.min(POLL_HEARTBEAT_INTERVAL_NS, livenessTimeoutNs / 10);

            final ProcessIdentity self = ProcessIdentity.self();
            final long now = System.nanoTime();
            final long otherPid = ring.peerPid(RingFile.Side.CONSUMER);
            if (otherPid != 0 && otherPid != self.pid() &&
                ring.peerState(RingFile.Side.CONSUMER, livenessTimeoutNs, now) == PeerState.ALIVE)
            {
                throw RingFormatException.ring(Kind.PERMISSION, path,
                    "cannot attach as consumer: another live process is attached (" +
                    ring.describePeer(RingFile.Side.CONSUMER, now) + ")");
            }
            ring.attach(RingFile.Side.CONSUMER, self, now);
            this.lastHeartbeatNs = now;
            this.cursor = ring.headPosition();
            PUBLISHED_CURSOR.setVolatile(this, cursor);
        }
        catch (final RuntimeException ex)
        {
            ring.release();
            throw ex;
        }
    }

    /**
     * Polls the next complete record into the reader's own view.
     *
     * @return the reader's view (valid until the next poll), or {@code null} if no complete
     * record is available yet.
     * @throws RingFormatException {@link Kind#CORRUPT_RECORD} if the next record breaks a rule.
     * @see #poll(DataRecord)
     */
    public DataRecord poll()
    {
        return poll(defaultView) ? defaultView : null;
    }

    /**
     * Polls the next complete record: reads {@code tail_position} (acquire); if the cursor is
     * below it, reads {@code length} (acquire). A positive length is validated and returned
     * (PADDING is consumed silently); a negative one means the producer is still writing,
     * unless it is dead or closed, in which case the record is skipped as ABORTED. Allocates
     * nothing.
     *
     * @param into the view to fill.
     * @return {@code true} if {@code into} now describes a record, {@code false} if none is
     * complete yet.
     * @throws RingFormatException {@link Kind#CORRUPT_RECORD} if the next record breaks a rule
     *                             of FORMAT.md (the cursor stays on it), {@link Kind#CLOSED} if closed.
     */
    public boolean poll(final DataRecord into)
    {
        if ((int)CLOSED.getOpaque(this) != 0)
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "poll on a closed reader");
        }
        final long now = System.nanoTime();
        if (now - lastHeartbeatNs >= POLL_HEARTBEAT_INTERVAL_NS)
        {
            lastHeartbeatNs = now;
            ring.heartbeat(RingFile.Side.CONSUMER, now);
        }
        final RingFile ring = this.ring;
        while (true)
        {
            final long p = cursor;
            final long tail = ring.getLongAcquire(TAIL_POSITION_OFFSET);
            if (p >= tail)
            {
                if (p > tail)
                {
                    throw RingFormatException.header(Kind.BAD_HEADER, path, "tail_position", tail,
                        "went backwards below the read cursor " + p);
                }
                return false;
            }
            if (tail - p > capacity)
            {
                throw RingFormatException.header(Kind.BAD_HEADER, path, "tail_position", tail,
                    "more than capacity=" + capacity + " ahead of the read cursor " + p);
            }
            final int offset = ring.offsetOf(p);
            final int length = ring.getIntAcquire(offset + RECORD_LENGTH_OFFSET);
            if (length > 0)
            {
                final int type = validate(p, offset, length, tail);
                final long next = p + align64(length);
                if (type == TYPE_PADDING)
                {
                    advanceCursor(next);
                    advanceHead();
                    continue;
                }
                fill(into, p, offset, length, type);
                lastBatchId = into.batchId();
                stuckPosition = -1;
                advanceCursor(next);
                return true;
            }
            if (length == 0)
            {
                throw RingFormatException.record(path, p, "length", 0,
                    "0 never appears below tail_position=" + tail);
            }
            final long absLength = -(long)length;
            checkLengthBounds(p, length, absLength, tail);
            if (!producerGone(p, now))
            {
                return false;
            }
            ring.getAndBitwiseOrInt(offset + RECORD_STATE_OFFSET, STATE_RELEASED | STATE_ABORTED);
            abortedCount++;
            stuckPosition = -1;
            advanceCursor(p + align64(absLength));
            advanceHead();
        }
    }

    /**
     * Polls, waiting with {@code idle} until a record arrives or {@code timeoutNs} passes.
     *
     * @param into      the view to fill.
     * @param idle      how to wait.
     * @param timeoutNs how long to wait at most.
     * @return {@code true} if {@code into} now describes a record, {@code false} on timeout.
     * @throws RingFormatException as {@link #poll(DataRecord)}.
     */
    public boolean poll(final DataRecord into, final IdleStrategy idle, final long timeoutNs)
    {
        final long start = System.nanoTime();
        idle.reset();
        while (!poll(into))
        {
            if (System.nanoTime() - start >= timeoutNs)
            {
                return false;
            }
            idle.idle();
        }
        return true;
    }

    private void advanceCursor(final long next)
    {
        cursor = next;
        PUBLISHED_CURSOR.setRelease(this, next);
    }

    /** Whether the producer of a record stuck at {@code p} with a negative length is gone. */
    private boolean producerGone(final long p, final long now)
    {
        if (stuckPosition != p)
        {
            stuckPosition = p;
            lastLivenessCheckNs = now;
            return false;
        }
        if (now - lastLivenessCheckNs < livenessCheckIntervalNs)
        {
            return false;
        }
        lastLivenessCheckNs = now;
        final PeerState state = ring.peerState(RingFile.Side.PRODUCER, livenessTimeoutNs, now);
        return state == PeerState.DEAD || state == PeerState.CLOSED;
    }

    private void checkLengthBounds(final long p, final int length, final long absLength, final long tail)
    {
        checks.checkLengthBounds(p, length, absLength, tail);
    }

    private int validate(final long p, final int offset, final int length, final long tail)
    {
        return checks.validate(p, offset, length, tail, lastBatchId);
    }

    private void fill(final DataRecord into, final long p, final int offset, final int length, final int type)
    {
        final RingFile ring = this.ring;
        into.set(
            ring,
            p,
            offset,
            length,
            type,
            ring.getLong(offset + RECORD_BATCH_ID_OFFSET),
            ring.getInt(offset + RECORD_ROW_COUNT_OFFSET),
            ring.getInt(offset + RECORD_STATE_OFFSET),
            ring.getInt(offset + RECORD_META_OFFSET_OFFSET),
            ring.getInt(offset + RECORD_META_LENGTH_OFFSET),
            ring.getInt(offset + RECORD_BODY_OFFSET_OFFSET),
            ring.getLong(offset + RECORD_BODY_LENGTH_OFFSET),
            ring.getLong(offset + RECORD_PRODUCED_UNIX_NS_OFFSET));
    }

    /**
     * Releases the record polled at {@code position}: ORs RELEASED into its {@code state},
     * then advances {@code head_position} by compare-and-swap over the contiguous run of
     * released records that starts at the head, never past the read cursor. Safe from any
     * thread, in any order; allocates nothing.
     *
     * @param position the record's {@link DataRecord#position()}.
     * @throws IllegalArgumentException if {@code position} is not a polled, unreleased record.
     * @throws IllegalStateException    if the record was already released.
     * @throws RingFormatException      {@link Kind#CLOSED} if the ring is already unmapped.
     */
    public void release(final long position)
    {
        if (!ring.tryRetain())
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "release of position=" + position + " after the ring was unmapped");
        }
        try
        {
            final long head = ring.getLongVolatile(HEAD_POSITION_OFFSET);
            final long polled = (long)PUBLISHED_CURSOR.getVolatile(this);
            if (position < head || position >= polled || (position & (RECORD_ALIGNMENT - 1)) != 0)
            {
                throw new IllegalArgumentException("release of position=" + position + " in \"" + path +
                    "\": not a polled, unreleased record (head_position=" + head + ", read cursor=" + polled + ")");
            }
            final int offset = ring.offsetOf(position);
            final long stored = ring.getLong(offset + RECORD_POSITION_OFFSET);
            if (stored != position)
            {
                throw new IllegalArgumentException("release of position=" + position + " in \"" + path +
                    "\": not the start of a record (position field=" + stored + ")");
            }
            final int previous = ring.getAndBitwiseOrInt(offset + RECORD_STATE_OFFSET, STATE_RELEASED);
            if ((previous & STATE_RELEASED) != 0)
            {
                throw new IllegalStateException("record at position=" + position + " in \"" + path + "\" released twice");
            }
            advanceHead();
        }
        finally
        {
            ring.release();
        }
    }

    /**
     * Moves {@code head_position} over released (or aborted, or PADDING) records below the
     * read cursor. Only records below the cursor are considered: their {@code state} was
     * written 0 by the producer before it published them, so a RELEASED bit left over from the
     * previous lap of the ring can never be mistaken for a release of this lap.
     */
    private void advanceHead()
    {
        final RingFile ring = this.ring;
        long h = ring.getLongVolatile(HEAD_POSITION_OFFSET);
        while (h < (long)PUBLISHED_CURSOR.getVolatile(this))
        {
            final int offset = ring.offsetOf(h);
            final int length = ring.getIntVolatile(offset + RECORD_LENGTH_OFFSET);
            final int state = ring.getIntVolatile(offset + RECORD_STATE_OFFSET);
            final long span;
            if (length > 0 && ((state & STATE_RELEASED) != 0 || ring.getInt(offset + RECORD_TYPE_OFFSET) == TYPE_PADDING))
            {
                span = length;
            }
            else if (length < 0 && (state & (STATE_RELEASED | STATE_ABORTED)) == (STATE_RELEASED | STATE_ABORTED))
            {
                span = -(long)length;
            }
            else
            {
                span = 0;
            }
            if (span < RECORD_HEADER_LENGTH)
            {
                // Not releasable, or read after another thread moved the head on and the
                // producer reused the bytes: decide on a fresh head.
                final long fresh = ring.getLongVolatile(HEAD_POSITION_OFFSET);
                if (fresh == h)
                {
                    return;
                }
                h = fresh;
                continue;
            }
            final long next = h + align64(span);
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

    /** Stores the consumer heartbeat now. Safe from any thread (e.g. a timer). */
    public void heartbeat()
    {
        if (ring.tryRetain())
        {
            try
            {
                ring.heartbeat(RingFile.Side.CONSUMER, System.nanoTime());
            }
            finally
            {
                ring.release();
            }
        }
    }

    /**
     * The ring this reader consumes.
     *
     * @return the ring.
     */
    public RingFile ring()
    {
        return ring;
    }

    /**
     * The read cursor: position of the next record to poll.
     *
     * @return a stream position.
     */
    public long cursor()
    {
        return (long)PUBLISHED_CURSOR.getVolatile(this);
    }

    /**
     * How many half-written records of a dead producer were skipped.
     *
     * @return the count since attach.
     */
    public long abortedCount()
    {
        return abortedCount;
    }

    /**
     * Judges the producer ({@code /proc} read: not for the hot path).
     *
     * @return the producer's state under this reader's liveness timeout.
     */
    public PeerState producerState()
    {
        return ring.peerState(RingFile.Side.PRODUCER, livenessTimeoutNs, System.nanoTime());
    }

    /**
     * Whether the stream has ended: the producer closed cleanly and everything it wrote has
     * been polled.
     *
     * @return {@code true} at end of stream.
     */
    public boolean isEndOfStream()
    {
        return ring.getLongAcquire(PRODUCER_CLOSED_OFFSET) != 0 && cursor() >= ring.tailPosition();
    }

    /**
     * Detaches: sets {@code consumer_closed} and drops the reader's reference to the ring.
     * Records polled before may still be {@linkplain #release(long) released} while the ring
     * stays mapped. Idempotent; call from the polling thread.
     */
    @Override
    public void close()
    {
        if (CLOSED.compareAndSet(this, 0, 1))
        {
            ring.markClosed(RingFile.Side.CONSUMER);
            ring.release();
        }
    }
}
