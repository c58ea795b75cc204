package dev.pubsubshm.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.IdentityHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.pubsubshm.ring.CommitRingWriter;
import dev.pubsubshm.ring.PeerState;
import dev.pubsubshm.ring.ProcessIdentity;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;

/**
 * The rings this JVM uses, one mapping per ring file, shared by everything Spark runs here:
 * the driver's stream (which scans ring headers and commits), the tasks (which read batches)
 * and the executor plugin (which commits on its host).
 *
 * <p><b>Consumer role.</b> The first use of a DATA ring attaches this JVM as the ring's
 * consumer (pid and start ticks in the header, FORMAT.md section 2), and a daemon timer
 * stamps the consumer heartbeat every {@value #HEARTBEAT_INTERVAL_MS} ms for as long as the
 * JVM uses the ring, so that pullerd does not take the reader for dead and nack its batches.
 * If another live process is attached, this JVM reads without taking the role and takes it
 * over when that process dies or detaches. A ring nobody in this JVM has used for
 * {@value #IDLE_DETACH_MS} ms (or whose file is gone or replaced) is detached cleanly
 * ({@code consumer_closed = 1}: pullerd keeps its uncommitted batches leased for a later
 * reader) and unmapped; a shutdown hook does the same at JVM exit.
 *
 * <p><b>Incarnations.</b> A ring is identified by its path and its {@code ring_instance_id}.
 * When pullerd recreates a ring, the path shows a new file: {@link #acquire(Path)} maps the new
 * one, while handles on the old incarnation keep its mapping alive until they are closed.
 *
 * <p><b>Pins.</b> A task reading a batch in place pins the position it reads from; a commit
 * in this JVM never moves {@code head_position} to or past a pinned position, so pullerd
 * cannot overwrite memory a task still reads (a task outliving its micro-batch's commit:
 * a zombie or speculative attempt).
 *
 * <p>Thread-safe.
 */
public final class RingRegistry
{
    /** Consumer heartbeat period (Aeron's and FORMAT.md's 500 ms). */
    public static final long HEARTBEAT_INTERVAL_MS = 500;
    /** A ring unused this long is detached and unmapped. */
    public static final long IDLE_DETACH_MS = 30_000;

    private static final Logger LOG = LoggerFactory.getLogger(RingRegistry.class);
    private static final RingRegistry INSTANCE = new RingRegistry();

    private final Map<Path, Entry> current = new HashMap<>();
    private final Set<Entry> all = java.util.Collections.newSetFromMap(new IdentityHashMap<>());
    private final ProcessIdentity self = ProcessIdentity.self();
    private BufferAllocator allocator;
    private ScheduledExecutorService timer;
    private boolean hookInstalled;

    private RingRegistry()
    {
    }

    /**
     * The registry of this JVM.
     *
     * @return the singleton.
     */
    public static RingRegistry get()
    {
        return INSTANCE;
    }

    /**
     * The Arrow allocator the readers of this JVM load batches with (foreign memory only: it
     * never allocates the data, which stays in the rings).
     *
     * @return the JVM-wide root allocator.
     */
    public synchronized BufferAllocator allocator()
    {
        if (allocator == null)
        {
            allocator = new RootAllocator(Long.MAX_VALUE);
        }
        return allocator;
    }

    /**
     * Acquires the ring file currently at {@code path}, mapping it if needed.
     *
     * @param path a DATA ring ({@code data-<p>.ring}) or COMMIT ring ({@code commit.ring}).
     * @return a handle; close it when done.
     * @throws RingUnavailableException {@link RingUnavailableException.Reason#MISSING} if there is no ring file.
     * @throws RingFormatException      if the file is not a valid ring or not this user's.
     */
    public Handle acquire(final Path path)
    {
        final Path p = path.toAbsolutePath().normalize();
        final int kind = p.getFileName().toString().equals("commit.ring") ? RingDescriptor.KIND_COMMIT : RingDescriptor.KIND_DATA;
        for (int attempt = 0; ; attempt++)
        {
            final long inode = inodeOf(p);
            synchronized (this)
            {
                final Entry e = current.get(p);
                if (e != null && e.inode == inode)
                {
                    e.refs++;
                    return new Handle(e);
                }
            }
            final RingFile ring;
            try
            {
                ring = RingFile.open(p, RingFile.OpenOptions.defaults().kind(kind).notReadyTimeout(0, TimeUnit.MILLISECONDS));
            }
            catch (final RingFormatException ex)
            {
                if (ex.kind() == RingFormatException.Kind.NOT_READY)
                {
                    throw missing(p, ex);
                }
                throw ex;
            }
            if (inodeOf(p) != inode)
            {
                ring.close(); // replaced while we opened it: try again
                if (attempt > 10)
                {
                    throw new IllegalStateException("pubsub-shm: ring \"" + p + "\" keeps being replaced while it is opened");
                }
                continue;
            }
            synchronized (this)
            {
                final Entry e = current.get(p);
                if (e != null && e.inode == inode)
                {
                    ring.close(); // another thread won the race
                    e.refs++;
                    return new Handle(e);
                }
                if (e != null)
                {
                    e.superseded = true;
                    current.remove(p);
                    if (e.refs == 0)
                    {
                        dispose(e);
                    }
                }
                final Entry created = new Entry(p, ring, inode);
                if (kind == RingDescriptor.KIND_DATA)
                {
                    takeConsumerRole(created, System.nanoTime());
                }
                current.put(p, created);
                all.add(created);
                created.refs = 1;
                startTimer();
                return new Handle(created);
            }
        }
    }

    /**
     * Acquires the ring at {@code path} only if it is the incarnation {@code instanceId}.
     *
     * @param path       the ring file.
     * @param instanceId the expected {@code ring_instance_id}.
     * @return a handle; close it when done.
     * @throws RingUnavailableException if the file is missing or is another incarnation.
     */
    public Handle acquire(final Path path, final long instanceId)
    {
        final Handle h = acquire(path);
        if (h.instanceId() != instanceId)
        {
            final long found = h.instanceId();
            h.close();
            throw new RingUnavailableException(RingUnavailableException.Reason.RECREATED, path,
                "pubsub-shm: ring \"" + path + "\" was recreated: it is instance " + hex(found) + " now, not " +
                hex(instanceId) + ". pullerd recreates a ring after its reader was dead for the grace period (or when " +
                "it restarts), and nacks the batches that were not committed, so Pub/Sub redelivers them into the new " +
                "ring; the batches planned from the old instance cannot be read again", null);
        }
        return h;
    }

    private static RingUnavailableException missing(final Path p, final Throwable cause)
    {
        return new RingUnavailableException(RingUnavailableException.Reason.MISSING, p,
            "pubsub-shm: no ring file \"" + p + "\" on this host: either pullerd does not run here for this " +
            "subscription, or the ring set was removed (pullerd stopped)", cause);
    }

    private static long inodeOf(final Path p)
    {
        try
        {
            return ((Number)Files.getAttribute(p, "unix:ino")).longValue();
        }
        catch (final NoSuchFileException ex)
        {
            throw missing(p, ex);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("pubsub-shm: cannot stat ring \"" + p + "\"", ex);
        }
    }

    static String hex(final long instanceId)
    {
        return String.format("%016x", instanceId);
    }

    /** Attaches as consumer unless another live process holds the role. Caller holds the lock. */
    private void takeConsumerRole(final Entry e, final long nowNs)
    {
        final RingFile ring = e.ring;
        final long pid = ring.peerPid(RingFile.Side.CONSUMER);
        if (pid == self.pid())
        {
            ring.attach(RingFile.Side.CONSUMER, self, nowNs);
            e.attached = true;
            return;
        }
        if (pid != 0)
        {
            final PeerState state = ring.peerState(RingFile.Side.CONSUMER, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS, nowNs);
            if (state == PeerState.ALIVE)
            {
                if (!e.sharedWarned)
                {
                    e.sharedWarned = true;
                    LOG.warn("pubsub-shm: ring {} already has a live consumer ({}); this JVM (pid {}) reads without " +
                        "taking the consumer role and takes it over when that process stops", e.path,
                        ring.describePeer(RingFile.Side.CONSUMER, nowNs), self.pid());
                }
                e.attached = false;
                return;
            }
        }
        ring.attach(RingFile.Side.CONSUMER, self, nowNs);
        e.attached = true;
    }

    private synchronized void startTimer()
    {
        if (timer == null)
        {
            timer = Executors.newSingleThreadScheduledExecutor(r ->
            {
                final Thread t = new Thread(r, "pubsub-shm-heartbeat");
                t.setDaemon(true);
                return t;
            });
            timer.scheduleAtFixedRate(this::tick, HEARTBEAT_INTERVAL_MS, HEARTBEAT_INTERVAL_MS, TimeUnit.MILLISECONDS);
        }
        if (!hookInstalled)
        {
            hookInstalled = true;
            Runtime.getRuntime().addShutdownHook(new Thread(this::detachAll, "pubsub-shm-detach"));
        }
    }

    /** The timer's work: heartbeats, take-overs, idle detaches. */
    private void tick()
    {
        try
        {
            final long now = System.nanoTime();
            final List<Entry> idle = new ArrayList<>();
            synchronized (this)
            {
                for (final Entry e : all)
                {
                    if (e.kind == RingDescriptor.KIND_DATA && !e.superseded)
                    {
                        if (e.attached)
                        {
                            if (e.ring.peerPid(RingFile.Side.CONSUMER) == self.pid())
                            {
                                e.ring.heartbeat(RingFile.Side.CONSUMER, now);
                            }
                            else
                            {
                                e.attached = false; // another process took the role
                            }
                        }
                        else if (e.refs > 0)
                        {
                            takeConsumerRole(e, now);
                        }
                    }
                    if (e.refs == 0 && (e.superseded || now - e.lastUseNs >= TimeUnit.MILLISECONDS.toNanos(IDLE_DETACH_MS) ||
                        !isCurrentFile(e)))
                    {
                        idle.add(e);
                    }
                }
                for (final Entry e : idle)
                {
                    if (current.get(e.path) == e)
                    {
                        current.remove(e.path);
                    }
                    dispose(e);
                }
                if (all.isEmpty() && timer != null)
                {
                    timer.shutdown();
                    timer = null;
                }
            }
        }
        catch (final RuntimeException ex)
        {
            LOG.warn("pubsub-shm: ring heartbeat failed", ex);
        }
    }

    private static boolean isCurrentFile(final Entry e)
    {
        try
        {
            return ((Number)Files.getAttribute(e.path, "unix:ino")).longValue() == e.inode;
        }
        catch (final IOException ex)
        {
            return false;
        }
    }

    /** Detaches (if this JVM is the consumer) and unmaps. Caller holds the lock; refs == 0. */
    private void dispose(final Entry e)
    {
        all.remove(e);
        try
        {
            if (e.writer != null)
            {
                e.writer.close();
            }
            if (e.attached && e.ring.peerPid(RingFile.Side.CONSUMER) == self.pid())
            {
                e.ring.markClosed(RingFile.Side.CONSUMER);
            }
        }
        finally
        {
            e.attached = false;
            e.ring.close();
        }
    }

    private synchronized void detachAll()
    {
        for (final Entry e : all)
        {
            if (e.attached && e.ring.refCount() > 0 && e.ring.peerPid(RingFile.Side.CONSUMER) == self.pid())
            {
                e.ring.markClosed(RingFile.Side.CONSUMER);
                e.attached = false;
            }
        }
    }

    /**
     * Rings mapped by this JVM (diagnostics and tests).
     *
     * @return the number of mapped ring incarnations.
     */
    public synchronized int mappedCount()
    {
        return all.size();
    }

    /**
     * Detaches and unmaps every ring no handle is open on now, without waiting for the idle
     * timeout (tests; and before the ring set is removed).
     */
    public synchronized void detachIdle()
    {
        final List<Entry> idle = new ArrayList<>();
        for (final Entry e : all)
        {
            if (e.refs == 0)
            {
                idle.add(e);
            }
        }
        for (final Entry e : idle)
        {
            if (current.get(e.path) == e)
            {
                current.remove(e.path);
            }
            dispose(e);
        }
    }

    private synchronized void releaseEntry(final Entry e)
    {
        if (--e.refs < 0)
        {
            throw new IllegalStateException("ring \"" + e.path + "\" handle released twice");
        }
        e.lastUseNs = System.nanoTime();
        if (e.refs == 0 && e.superseded)
        {
            dispose(e);
        }
    }

    /** One mapped incarnation of a ring file. */
    private static final class Entry
    {
        final Path path;
        final RingFile ring;
        final long inode;
        final int kind;
        final long instanceId;
        final Object lock = new Object();
        /** Pinned positions and their counts; guarded by {@link #lock}. */
        final TreeMap<Long, Integer> pins = new TreeMap<>();
        /** Highest batch id this JVM knows to be committed; guarded by {@link #lock}. */
        long committedUpTo;
        /** The writer of a COMMIT ring; guarded by {@link #lock}. */
        CommitRingWriter writer;
        // guarded by the registry
        int refs;
        long lastUseNs = System.nanoTime();
        boolean superseded;
        boolean attached;
        boolean sharedWarned;

        Entry(final Path path, final RingFile ring, final long inode)
        {
            this.path = path;
            this.ring = ring;
            this.inode = inode;
            this.kind = ring.kind();
            this.instanceId = ring.instanceId();
        }
    }

    /**
     * A use of one ring incarnation. The ring stays mapped (and, for a DATA ring, attached and
     * heart-beaten) at least until the handle is closed. Not thread-safe itself; the ring
     * operations it offers are.
     */
    public final class Handle implements AutoCloseable
    {
        private final Entry e;
        private boolean closed;

        private Handle(final Entry e)
        {
            this.e = e;
        }

        /** @return the mapped ring (valid until {@link #close()}). */
        public RingFile ring()
        {
            return e.ring;
        }

        /** @return the ring file's path. */
        public Path path()
        {
            return e.path;
        }

        /** @return the incarnation's {@code ring_instance_id}. */
        public long instanceId()
        {
            return e.instanceId;
        }

        /**
         * Whether the file at the path is still this incarnation (a {@code stat}).
         *
         * @return {@code false} if the file was removed or replaced.
         */
        public boolean isCurrent()
        {
            return !e.superseded && isCurrentFile(e);
        }

        /**
         * The lock that serializes, within this JVM, the commits of the ring and the pins of
         * its readers.
         *
         * @return the incarnation's lock.
         */
        public Object lock()
        {
            return e.lock;
        }

        /**
         * Pins {@code position} so that no commit in this JVM moves the head past it, if the
         * head has not passed it already.
         *
         * @param position a record start at or above the head.
         * @return {@code true} if pinned (pair with {@link #unpin}), {@code false} if the head is already past it.
         */
        public boolean pin(final long position)
        {
            synchronized (e.lock)
            {
                if (e.ring.headPosition() > position)
                {
                    return false;
                }
                e.pins.merge(position, 1, Integer::sum);
                return true;
            }
        }

        /**
         * Removes a pin.
         *
         * @param position the pinned position.
         */
        public void unpin(final long position)
        {
            synchronized (e.lock)
            {
                final Integer n = e.pins.get(position);
                if (n == null)
                {
                    throw new IllegalStateException("position " + position + " of \"" + e.path + "\" is not pinned");
                }
                if (n == 1)
                {
                    e.pins.remove(position);
                }
                else
                {
                    e.pins.put(position, n - 1);
                }
            }
        }

        /**
         * The lowest pinned position. Call with {@link #lock()} held.
         *
         * @return the position, or {@link Long#MAX_VALUE} if nothing is pinned.
         */
        public long lowestPin()
        {
            return e.pins.isEmpty() ? Long.MAX_VALUE : e.pins.firstKey();
        }

        /**
         * The highest batch id this JVM knows to be committed. Call with {@link #lock()} held.
         *
         * @return the batch id, 0 if none.
         */
        public long committedUpTo()
        {
            return e.committedUpTo;
        }

        /**
         * Records that every batch up to {@code batchId} is committed. Call with {@link #lock()} held.
         *
         * @param batchId the batch id.
         */
        public void committedUpTo(final long batchId)
        {
            e.committedUpTo = Math.max(e.committedUpTo, batchId);
        }

        /**
         * The commit writer of a COMMIT ring (created on first use; attaches as a producer).
         * Call with {@link #lock()} held.
         *
         * @return the writer.
         * @throws IllegalStateException if this is not a COMMIT ring.
         */
        public CommitRingWriter commitWriter()
        {
            if (e.kind != RingDescriptor.KIND_COMMIT)
            {
                throw new IllegalStateException("\"" + e.path + "\" is not a COMMIT ring");
            }
            if (e.writer == null)
            {
                e.writer = new CommitRingWriter(e.ring);
            }
            return e.writer;
        }

        /** Ends this use. Idempotent. */
        @Override
        public void close()
        {
            if (!closed)
            {
                closed = true;
                releaseEntry(e);
            }
        }
    }
}
