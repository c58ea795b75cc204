package dev.pubsubshm.ring;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.file.Path;
import java.time.Instant;
import java.util.Objects;
import java.util.concurrent.TimeUnit;
import java.util.function.LongSupplier;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static dev.pubsubshm.ring.RingFormatException.Kind;

/**
 * A producer of COMMIT records (FORMAT.md section 4): tells pullerd which batches of which
 * data ring Spark committed, gave back, or failed. Thread-safe and lock-free: any number of
 * threads (and processes) write into the same ring.
 *
 * <p><b>Protocol.</b> Claim a slot by compare-and-swap of {@code tail_position} from
 * {@code t} to {@code t + 64} (only while {@code tail - head < capacity}), then
 * compare-and-swap the slot's {@code length} from 0 to -64; if that fails the consumer is
 * abandoning the slot, so claim again; if it succeeds but {@code head > t}, the consumer
 * already abandoned and recycled position {@code t} while this producer stalled, so give the
 * slot back (-64 to 0) and claim again. Write the fields, then publish with a
 * compare-and-swap of {@code length} from -64 to 64; if that fails the consumer declared the
 * slot abandoned (this producer stalled past the unblock timeout), so the record is written
 * again in a new slot.
 *
 * <p>Known limit of the length-only handshake: a producer that stalls past the unblock
 * timeout <em>and</em> a whole lap of the ring, between writing its fields and publishing,
 * could publish another producer's slot of the next lap (ABA). The consumer's check that
 * {@code position} equals {@code head} catches the mismatched position such a slot carries.
 *
 * <p><b>Memory.</b> The writer holds its own reference to the ring from construction until
 * {@link #close()}; nothing it returns points into the mapping.
 */
public final class CommitRingWriter implements AutoCloseable
{
    /** Default time a write waits for space in a full ring before failing with {@link Kind#FULL}. */
    public static final long DEFAULT_FULL_TIMEOUT_NS = TimeUnit.SECONDS.toNanos(10);

    private static final VarHandle LAST_HEARTBEAT;
    private static final VarHandle CLOSED;

    static
    {
        try
        {
            final MethodHandles.Lookup lookup = MethodHandles.lookup();
            LAST_HEARTBEAT = lookup.findVarHandle(CommitRingWriter.class, "lastHeartbeatNs", long.class);
            CLOSED = lookup.findVarHandle(CommitRingWriter.class, "closed", int.class);
        }
        catch (final ReflectiveOperationException ex)
        {
            throw new ExceptionInInitializerError(ex);
        }
    }

    /**
     * Where the writer gets its identity, clocks and waiting policy. Immutable; start from
     * {@link #defaults()}. Production uses the defaults; tests and golden files fix the values.
     */
    public static final class Config
    {
        private final ProcessIdentity identity;
        private final LongSupplier nanoClock;
        private final LongSupplier unixNanoClock;
        private final long fullTimeoutNs;
        private final WriteHook hook;

        private Config(
            final ProcessIdentity identity,
            final LongSupplier nanoClock,
            final LongSupplier unixNanoClock,
            final long fullTimeoutNs,
            final WriteHook hook)
        {
            this.identity = identity;
            this.nanoClock = nanoClock;
            this.unixNanoClock = unixNanoClock;
            this.fullTimeoutNs = fullTimeoutNs;
            this.hook = hook;
        }

        /**
         * This process's identity, {@link System#nanoTime()} heartbeats, the wall clock for
         * {@code produced_unix_ns}, and {@link #DEFAULT_FULL_TIMEOUT_NS}.
         *
         * @return the defaults.
         */
        public static Config defaults()
        {
            return new Config(null, System::nanoTime, CommitRingWriter::unixNanos, DEFAULT_FULL_TIMEOUT_NS, null);
        }

        /**
         * The identity stamped into the header and into every record's {@code producer_pid}.
         *
         * @param identity the identity (default: {@link ProcessIdentity#self()}).
         * @return new config.
         */
        public Config identity(final ProcessIdentity identity)
        {
            return new Config(Objects.requireNonNull(identity), nanoClock, unixNanoClock, fullTimeoutNs, hook);
        }

        /**
         * The heartbeat clock ({@code CLOCK_MONOTONIC} nanoseconds).
         *
         * @param nanoClock the clock (default: {@link System#nanoTime()}).
         * @return new config.
         */
        public Config nanoClock(final LongSupplier nanoClock)
        {
            return new Config(identity, Objects.requireNonNull(nanoClock), unixNanoClock, fullTimeoutNs, hook);
        }

        /**
         * The wall clock for {@code produced_unix_ns}.
         *
         * @param unixNanoClock nanoseconds since the epoch (default: the system clock).
         * @return new config.
         */
        public Config unixNanoClock(final LongSupplier unixNanoClock)
        {
            return new Config(identity, nanoClock, Objects.requireNonNull(unixNanoClock), fullTimeoutNs, hook);
        }

        /**
         * How long {@link #commit}, {@link #release} and {@link #nack} wait for space.
         *
         * @param timeout 0 to fail at once when the ring is full.
         * @param unit    unit of {@code timeout}.
         * @return new config.
         */
        public Config fullTimeout(final long timeout, final TimeUnit unit)
        {
            if (timeout < 0)
            {
                throw new IllegalArgumentException("fullTimeout=" + timeout + " " + unit + " must be >= 0");
            }
            return new Config(identity, nanoClock, unixNanoClock, unit.toNanos(timeout), hook);
        }

        /** Test hook into the claim/publish steps, to play a consumer that abandons slots. */
        Config hook(final WriteHook hook)
        {
            return new Config(identity, nanoClock, unixNanoClock, fullTimeoutNs, hook);
        }
    }

    /** Test hook into the steps of a write; production passes none. */
    interface WriteHook
    {
        /** After {@code tail_position} moved past the slot, before its length is claimed. */
        default void afterTailClaim(final long position)
        {
        }

        /** After the fields are written, before the publishing compare-and-swap. */
        default void beforePublish(final long position)
        {
        }
    }

    private final RingFile ring;
    private final Path path;
    private final long capacity;
    private final ProcessIdentity identity;
    private final int pid32;
    private final LongSupplier nanoClock;
    private final LongSupplier unixNanoClock;
    private final long fullTimeoutNs;
    private final WriteHook hook;

    @SuppressWarnings("unused") // accessed through LAST_HEARTBEAT
    private volatile long lastHeartbeatNs;
    @SuppressWarnings("unused") // accessed through CLOSED
    private volatile int closed;

    /**
     * Attaches as a producer of a COMMIT ring with the default config.
     *
     * @param ring a COMMIT ring the caller holds a reference to.
     */
    public CommitRingWriter(final RingFile ring)
    {
        this(ring, Config.defaults());
    }

    /**
     * Attaches as a producer of a COMMIT ring: stores the identity and a heartbeat in the
     * producer block and clears {@code producer_closed}. Several writers (threads of one
     * writer, or other processes) may produce into the same ring; the producer block holds
     * the last one to attach.
     *
     * @param ring   a COMMIT ring the caller holds a reference to.
     * @param config identity, clocks, waiting.
     * @throws IllegalArgumentException if {@code ring} is not a COMMIT ring.
     * @throws RingFormatException      {@link Kind#CLOSED} if the ring is unmapped.
     */
    public CommitRingWriter(final RingFile ring, final Config config)
    {
        if (ring.kind() != KIND_COMMIT)
        {
            throw new IllegalArgumentException("\"" + ring.path() + "\" is a " + kindName(ring.kind()) +
                " ring, not a COMMIT ring");
        }
        ring.retain();
        this.ring = ring;
        this.path = ring.path();
        this.capacity = ring.capacity();
        this.identity = config.identity != null ? config.identity : ProcessIdentity.self();
        this.pid32 = (int)identity.pid();
        this.nanoClock = config.nanoClock;
        this.unixNanoClock = config.unixNanoClock;
        this.fullTimeoutNs = config.fullTimeoutNs;
        this.hook = config.hook;
        final long now = nanoClock.getAsLong();
        LAST_HEARTBEAT.setVolatile(this, now);
        ring.attach(RingFile.Side.PRODUCER, identity, now);
    }

    /**
     * Writes a COMMIT record: Spark committed batches {@code first..last} of the data ring;
     * pullerd acknowledges them.
     *
     * @param partition          the data ring's partition.
     * @param dataRingInstanceId the data ring's {@code ring_instance_id}.
     * @param firstBatchId       first batch id, {@code >= 1}.
     * @param lastBatchId        last batch id (inclusive), {@code >= firstBatchId}.
     * @return the position of the published slot.
     * @throws RingFormatException {@link Kind#FULL} if no slot frees up within the full timeout,
     *                             {@link Kind#CLOSED} if closed.
     */
    public long commit(final int partition, final long dataRingInstanceId, final long firstBatchId, final long lastBatchId)
    {
        return write(COMMIT_TYPE_COMMIT, partition, dataRingInstanceId, firstBatchId, lastBatchId, fullTimeoutNs);
    }

    /**
     * Writes a RELEASE record: the reader gives batches {@code first..last} back unprocessed.
     *
     * @param partition          the data ring's partition.
     * @param dataRingInstanceId the data ring's {@code ring_instance_id}.
     * @param firstBatchId       first batch id, {@code >= 1}.
     * @param lastBatchId        last batch id (inclusive), {@code >= firstBatchId}.
     * @return the position of the published slot.
     * @throws RingFormatException {@link Kind#FULL} or {@link Kind#CLOSED}, as {@link #commit}.
     */
    public long release(final int partition, final long dataRingInstanceId, final long firstBatchId, final long lastBatchId)
    {
        return write(COMMIT_TYPE_RELEASE, partition, dataRingInstanceId, firstBatchId, lastBatchId, fullTimeoutNs);
    }

    /**
     * Writes a NACK record: processing batches {@code first..last} failed.
     *
     * @param partition          the data ring's partition.
     * @param dataRingInstanceId the data ring's {@code ring_instance_id}.
     * @param firstBatchId       first batch id, {@code >= 1}.
     * @param lastBatchId        last batch id (inclusive), {@code >= firstBatchId}.
     * @return the position of the published slot.
     * @throws RingFormatException {@link Kind#FULL} or {@link Kind#CLOSED}, as {@link #commit}.
     */
    public long nack(final int partition, final long dataRingInstanceId, final long firstBatchId, final long lastBatchId)
    {
        return write(COMMIT_TYPE_NACK, partition, dataRingInstanceId, firstBatchId, lastBatchId, fullTimeoutNs);
    }

    /**
     * Writes one record of any producer type, waiting up to {@code timeoutNs} for space.
     *
     * @param type               {@link RingDescriptor#COMMIT_TYPE_COMMIT}, {@link RingDescriptor#COMMIT_TYPE_RELEASE}
     *                           or {@link RingDescriptor#COMMIT_TYPE_NACK}.
     * @param partition          the data ring's partition, {@code >= 0}.
     * @param dataRingInstanceId the data ring's {@code ring_instance_id}, non-zero.
     * @param firstBatchId       first batch id, {@code >= 1}.
     * @param lastBatchId        last batch id (inclusive), {@code >= firstBatchId}.
     * @param timeoutNs          how long to wait while the ring is full; 0 fails at once.
     * @return the position of the published slot.
     * @throws IllegalArgumentException if a value breaks a rule of FORMAT.md section 4.
     * @throws RingFormatException      {@link Kind#FULL} if no slot frees up in time,
     *                                  {@link Kind#CLOSED} if closed.
     */
    public long write(
        final int type,
        final int partition,
        final long dataRingInstanceId,
        final long firstBatchId,
        final long lastBatchId,
        final long timeoutNs)
    {
        if (type != COMMIT_TYPE_COMMIT && type != COMMIT_TYPE_RELEASE && type != COMMIT_TYPE_NACK)
        {
            throw new IllegalArgumentException("commit record type=" + type + " must be 1 (COMMIT), 2 (RELEASE) or 3 (NACK)");
        }
        if (partition < 0)
        {
            throw new IllegalArgumentException("partition=" + partition + " must be >= 0");
        }
        if (dataRingInstanceId == 0)
        {
            throw new IllegalArgumentException("data_ring_instance_id=0 must be non-zero");
        }
        if (firstBatchId < 1 || lastBatchId < firstBatchId)
        {
            throw new IllegalArgumentException("batch range first_batch_id=" + firstBatchId + " last_batch_id=" +
                lastBatchId + " must satisfy 1 <= first <= last");
        }
        if ((int)CLOSED.getVolatile(this) != 0)
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "write on a closed commit writer");
        }

        final RingFile ring = this.ring;
        if (!ring.tryRetain())
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "write after the commit ring was unmapped");
        }
        try
        {
            maybeHeartbeat();
            return claimAndWrite(type, partition, dataRingInstanceId, firstBatchId, lastBatchId, timeoutNs);
        }
        finally
        {
            ring.release();
        }
    }

    private long claimAndWrite(
        final int type,
        final int partition,
        final long dataRingInstanceId,
        final long firstBatchId,
        final long lastBatchId,
        final long timeoutNs)
    {
        final RingFile ring = this.ring;
        long waitStart = 0;
        IdleStrategy idle = null;
        while (true)
        {
            final long head = ring.getLongVolatile(HEAD_POSITION_OFFSET);
            final long tail = ring.getLongVolatile(TAIL_POSITION_OFFSET);
            if (tail - head >= capacity)
            {
                final long now = System.nanoTime();
                if (idle == null)
                {
                    idle = new BackoffIdleStrategy();
                    waitStart = now;
                }
                if (now - waitStart >= timeoutNs)
                {
                    throw RingFormatException.ring(Kind.FULL, path, "commit ring full: tail_position=" + tail +
                        " head_position=" + head + " capacity=" + capacity + " after waiting " +
                        TimeUnit.NANOSECONDS.toMillis(now - waitStart) + " ms (" +
                        ring.describePeer(RingFile.Side.CONSUMER, now) + ")");
                }
                idle.idle();
                continue;
            }
            if (!ring.compareAndSetLong(TAIL_POSITION_OFFSET, tail, tail + COMMIT_RECORD_LENGTH))
            {
                continue;
            }
            final int offset = ring.offsetOf(tail);
            if (hook != null)
            {
                hook.afterTailClaim(tail);
            }
            if (!ring.compareAndSetInt(offset + COMMIT_LENGTH_OFFSET, 0, COMMIT_LENGTH_CLAIMED))
            {
                continue; // the consumer is abandoning this slot: claim again
            }
            if (ring.getLongVolatile(HEAD_POSITION_OFFSET) > tail)
            {
                // We stalled past the unblock timeout: the consumer abandoned and recycled
                // this position, and the zeroed slot now belongs to the next lap. Give it back.
                ring.compareAndSetInt(offset + COMMIT_LENGTH_OFFSET, COMMIT_LENGTH_CLAIMED, 0);
                continue;
            }
            ring.putInt(offset + COMMIT_TYPE_OFFSET, type);
            ring.putLong(offset + COMMIT_POSITION_OFFSET, tail);
            ring.putLong(offset + COMMIT_FIRST_BATCH_ID_OFFSET, firstBatchId);
            ring.putLong(offset + COMMIT_LAST_BATCH_ID_OFFSET, lastBatchId);
            ring.putInt(offset + COMMIT_PARTITION_OFFSET, partition);
            ring.putInt(offset + COMMIT_PRODUCER_PID_OFFSET, pid32);
            ring.putLong(offset + COMMIT_DATA_RING_INSTANCE_ID_OFFSET, dataRingInstanceId);
            ring.putLong(offset + COMMIT_PRODUCED_UNIX_NS_OFFSET, unixNanoClock.getAsLong());
            ring.putLong(offset + COMMIT_RESERVED_OFFSET, 0);
            if (hook != null)
            {
                hook.beforePublish(tail);
            }
            if (ring.compareAndSetInt(offset + COMMIT_LENGTH_OFFSET, COMMIT_LENGTH_CLAIMED, COMMIT_RECORD_LENGTH))
            {
                return tail;
            }
            // The consumer gave up on this slot while we wrote it: write the record again.
        }
    }

    private void maybeHeartbeat()
    {
        final long now = nanoClock.getAsLong();
        final long last = (long)LAST_HEARTBEAT.getOpaque(this);
        if (now - last >= RingFile.HEARTBEAT_INTERVAL_NS / 5 && LAST_HEARTBEAT.compareAndSet(this, last, now))
        {
            ring.heartbeat(RingFile.Side.PRODUCER, now);
        }
    }

    /**
     * Stores the producer heartbeat now. Call at least every {@link RingFile#HEARTBEAT_INTERVAL_NS}
     * while idle; writes stamp it too. Safe from any thread.
     *
     * @throws RingFormatException {@link Kind#CLOSED} if closed.
     */
    public void heartbeat()
    {
        if ((int)CLOSED.getVolatile(this) != 0)
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "heartbeat on a closed commit writer");
        }
        final long now = nanoClock.getAsLong();
        LAST_HEARTBEAT.setVolatile(this, now);
        ring.heartbeat(RingFile.Side.PRODUCER, now);
    }

    /**
     * The ring this writer produces into.
     *
     * @return the ring.
     */
    public RingFile ring()
    {
        return ring;
    }

    /**
     * Detaches: sets {@code producer_closed} if this writer's process is still the one
     * recorded in the producer block, and drops the writer's reference to the ring.
     * Idempotent. Writes must have returned before it is called.
     */
    @Override
    public void close()
    {
        if (CLOSED.compareAndSet(this, 0, 1))
        {
            if (ring.peerPid(RingFile.Side.PRODUCER) == identity.pid())
            {
                ring.markClosed(RingFile.Side.PRODUCER);
            }
            ring.release();
        }
    }

    private static long unixNanos()
    {
        final Instant now = Instant.now();
        return now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }
}
