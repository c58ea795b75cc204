package dev.pubsubshm.ring;

import sun.misc.Unsafe;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.lang.reflect.Field;
import java.nio.Buffer;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.MappedByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFileAttributes;
import java.nio.file.attribute.PosixFilePermission;
import java.util.Set;
import java.util.concurrent.TimeUnit;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static dev.pubsubshm.ring.RingFormatException.Kind;

/**
 * One ring file, mapped into this process: the header validated against FORMAT.md, atomic
 * access to the shared fields, and the lifetime of the mapping.
 *
 * <p><b>Never creates</b>: pullerd (Go) creates every ring file; {@link #open} maps an existing
 * one after checking that it belongs to this user with no group/other permission bits and
 * that every header field obeys FORMAT.md section 2 ({@code layout_version} first).
 *
 * <p><b>Memory ownership.</b> The mapping is reference-counted. {@link #open} returns a ring
 * holding one reference, the owner's, which {@link #close()} drops. Anything that keeps
 * pointing into the mapping after the call that produced it returns (a reader, a writer, an
 * Arrow buffer wrapping a record body) must hold its own reference: {@link #retain()} or
 * {@link #tryRetain()}, then {@link #release()} when done. The file is unmapped when the count
 * reaches zero, and never before: touching an unmapped region crashes the JVM, so every
 * address, {@link ByteBuffer} view and accessor of this class is valid only while the caller
 * (or something that outlives its use) holds a reference. The accessors themselves do not
 * check, to stay cheap on the hot path.
 *
 * <p>Thread-safe: the reference count and the atomic accessors may be used from any thread.
 */
public final class RingFile implements AutoCloseable
{
    /** Default time {@link #open} waits for a {@code layout_version} of 0 (or a missing file). */
    public static final long DEFAULT_NOT_READY_TIMEOUT_NS = TimeUnit.SECONDS.toNanos(5);
    /** Default liveness timeout: a peer whose heartbeat is older is dead (Aeron's 10 s). */
    public static final long DEFAULT_LIVENESS_TIMEOUT_NS = TimeUnit.SECONDS.toNanos(10);
    /** Each side stores its heartbeat at least this often (Aeron's 500 ms). */
    public static final long HEARTBEAT_INTERVAL_NS = TimeUnit.MILLISECONDS.toNanos(500);

    private static final VarHandle LONG_VIEW = MethodHandles.byteBufferViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle INT_VIEW = MethodHandles.byteBufferViewVarHandle(int[].class, ByteOrder.LITTLE_ENDIAN);
    private static final VarHandle REFS;
    private static final VarHandle OWNER_CLOSED;
    private static final Unsafe UNSAFE;
    private static final long BUFFER_ADDRESS_OFFSET;

    static
    {
        try
        {
            final MethodHandles.Lookup lookup = MethodHandles.lookup();
            REFS = lookup.findVarHandle(RingFile.class, "refs", int.class);
            OWNER_CLOSED = lookup.findVarHandle(RingFile.class, "ownerClosed", int.class);
            final Field theUnsafe = Unsafe.class.getDeclaredField("theUnsafe");
            theUnsafe.setAccessible(true);
            UNSAFE = (Unsafe)theUnsafe.get(null);
            BUFFER_ADDRESS_OFFSET = UNSAFE.objectFieldOffset(Buffer.class.getDeclaredField("address"));
        }
        catch (final ReflectiveOperationException ex)
        {
            throw new ExceptionInInitializerError(ex);
        }
    }

    /** The side of a ring a process attaches to; each has its own identity block. */
    public enum Side
    {
        /** Writes records: pullerd for DATA, the JVM for COMMIT and OUTBOUND. */
        PRODUCER(PRODUCER_IDENTITY_OFFSET),
        /** Reads records: the JVM for DATA, pullerd for COMMIT and OUTBOUND. */
        CONSUMER(CONSUMER_IDENTITY_OFFSET);

        private final int base;

        Side(final int base)
        {
            this.base = base;
        }

        /**
         * File offset of this side's identity block.
         *
         * @return {@link RingDescriptor#PRODUCER_IDENTITY_OFFSET} or {@link RingDescriptor#CONSUMER_IDENTITY_OFFSET}.
         */
        public int identityOffset()
        {
            return base;
        }

        String label()
        {
            return this == PRODUCER ? "producer" : "consumer";
        }
    }

    /**
     * What {@link #open} expects of a ring. Immutable; start from {@link #defaults()}.
     */
    public static final class OpenOptions
    {
        private static final OpenOptions DEFAULTS = new OpenOptions(0, Integer.MIN_VALUE, DEFAULT_NOT_READY_TIMEOUT_NS);

        private final int kind;
        private final int partition;
        private final long notReadyTimeoutNs;

        private OpenOptions(final int kind, final int partition, final long notReadyTimeoutNs)
        {
            this.kind = kind;
            this.partition = partition;
            this.notReadyTimeoutNs = notReadyTimeoutNs;
        }

        /**
         * Any kind, any partition, wait {@link #DEFAULT_NOT_READY_TIMEOUT_NS} for a ring that
         * is not ready.
         *
         * @return the defaults.
         */
        public static OpenOptions defaults()
        {
            return DEFAULTS;
        }

        /**
         * Refuse a ring of another {@code ring_kind} ({@link Kind#BAD_HEADER}).
         *
         * @param kind {@link RingDescriptor#KIND_DATA}, {@link RingDescriptor#KIND_COMMIT}, {@link RingDescriptor#KIND_OUTBOUND}, or 0 for any.
         * @return new options.
         */
        public OpenOptions kind(final int kind)
        {
            return new OpenOptions(kind, partition, notReadyTimeoutNs);
        }

        /**
         * Refuse a ring whose {@code partition} differs ({@link Kind#BAD_HEADER}).
         *
         * @param partition the expected partition.
         * @return new options.
         */
        public OpenOptions partition(final int partition)
        {
            return new OpenOptions(kind, partition, notReadyTimeoutNs);
        }

        /**
         * How long to wait while the file is missing or its {@code layout_version} is 0 (the
         * creator has not finished) before failing with {@link Kind#NOT_READY}.
         *
         * @param timeout  0 to fail at once.
         * @param unit     unit of {@code timeout}.
         * @return new options.
         */
        public OpenOptions notReadyTimeout(final long timeout, final TimeUnit unit)
        {
            if (timeout < 0)
            {
                throw new IllegalArgumentException("notReadyTimeout=" + timeout + " " + unit + " must be >= 0");
            }
            return new OpenOptions(kind, partition, unit.toNanos(timeout));
        }
    }

    private final Path path;
    private final MappedByteBuffer mapping;
    private final ByteBuffer buffer;
    private final long address;
    private final int layoutVersion;
    private final int kind;
    private final int headerLength;
    private final long capacity;
    private final long mask;
    private final long fileLength;
    private final long instanceId;
    private final long createdUnixNs;
    private final int partition;
    private final int maxRecordLength;
    private final int schemaLength;

    @SuppressWarnings("unused") // accessed through REFS
    private volatile int refs = 1;
    @SuppressWarnings("unused") // accessed through OWNER_CLOSED
    private volatile int ownerClosed;

    private RingFile(final Path path, final MappedByteBuffer mapping, final long fileSize, final OpenOptions options)
    {
        this.path = path;
        this.mapping = mapping;
        this.buffer = mapping.duplicate().order(ByteOrder.LITTLE_ENDIAN);
        this.address = UNSAFE.getLong(mapping, BUFFER_ADDRESS_OFFSET);

        final ByteBuffer b = buffer;
        if (fileSize < PAGE_SIZE)
        {
            throw RingFormatException.header(Kind.TRUNCATED, path, "file_size", fileSize,
                "a ring file is at least " + PAGE_SIZE + " bytes");
        }
        final int version = (int)INT_VIEW.getAcquire(b, LAYOUT_VERSION_OFFSET);
        if (version == 0)
        {
            throw RingFormatException.header(Kind.NOT_READY, path, "layout_version", 0,
                "the creator has not finished initialising the file");
        }
        if (version >>> 16 != VERSION_MAJOR)
        {
            throw RingFormatException.header(Kind.VERSION, path, "layout_version",
                (version >>> 16) + "." + (version & 0xFFFF), "this build reads major version " + VERSION_MAJOR);
        }
        final long magic = b.getLong(MAGIC_OFFSET);
        if (magic != MAGIC)
        {
            throw RingFormatException.header(Kind.BAD_MAGIC, path, "magic", "0x" + Long.toHexString(magic),
                "must be 0x" + Long.toHexString(MAGIC) + " (\"PSSHMRNG\"): not a ring file");
        }
        final int k = b.getInt(RING_KIND_OFFSET);
        if (k != KIND_DATA && k != KIND_COMMIT && k != KIND_OUTBOUND)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "ring_kind", Integer.toUnsignedString(k),
                "must be 1 (DATA), 2 (COMMIT) or 3 (OUTBOUND)");
        }
        if (options.kind != 0 && k != options.kind)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "ring_kind", k + " (" + kindName(k) + ")",
                "expected " + options.kind + " (" + kindName(options.kind) + ")");
        }
        final long hl = Integer.toUnsignedLong(b.getInt(HEADER_LENGTH_OFFSET));
        if (hl < PAGE_SIZE || hl % PAGE_SIZE != 0)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "header_length", hl,
                "must be a multiple of " + PAGE_SIZE + ", at least " + PAGE_SIZE);
        }
        final long alignment = Integer.toUnsignedLong(b.getInt(RECORD_ALIGNMENT_OFFSET));
        if (alignment != RECORD_ALIGNMENT)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "record_alignment", alignment,
                "must be " + RECORD_ALIGNMENT);
        }
        final long c = b.getLong(CAPACITY_OFFSET);
        if (c < MIN_CAPACITY || c > MAX_CAPACITY || Long.bitCount(c) != 1)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "capacity", Long.toUnsignedString(c),
                "must be a power of two in [" + MIN_CAPACITY + ", " + MAX_CAPACITY + "]");
        }
        final long fl = b.getLong(FILE_LENGTH_OFFSET);
        if (fl != hl + c)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "file_length", Long.toUnsignedString(fl),
                "must equal header_length + capacity = " + (hl + c));
        }
        if (fl > fileSize)
        {
            throw RingFormatException.header(Kind.TRUNCATED, path, "file_length", fl,
                "the file has only " + fileSize + " bytes");
        }
        if (fl != fileSize)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "file_length", fl,
                "must equal the file size " + fileSize);
        }
        final long id = b.getLong(RING_INSTANCE_ID_OFFSET);
        if (id == 0)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "ring_instance_id", 0, "must be non-zero");
        }
        final int p = b.getInt(PARTITION_OFFSET);
        if (k == KIND_COMMIT && p != -1)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "partition", p, "must be -1 for a COMMIT ring");
        }
        if (k != KIND_COMMIT && p < 0)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "partition", p,
                "must be >= 0 for a " + kindName(k) + " ring");
        }
        if (options.partition != Integer.MIN_VALUE && p != options.partition)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "partition", p,
                "expected partition " + options.partition);
        }
        final long mr = Integer.toUnsignedLong(b.getInt(MAX_RECORD_LENGTH_OFFSET));
        if (mr != maxRecordLengthFor(k, c))
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "max_record_length", mr,
                "must be " + maxRecordLengthFor(k, c) + " for a " + kindName(k) + " ring of capacity " + c);
        }
        final long so = Integer.toUnsignedLong(b.getInt(SCHEMA_OFFSET_OFFSET));
        final long sl = Integer.toUnsignedLong(b.getInt(SCHEMA_LENGTH_OFFSET));
        if (so != SCHEMA_START)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "schema_offset", so, "must be " + SCHEMA_START);
        }
        if (so + sl > hl)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "schema_length", sl,
                "schema_offset + schema_length must be <= header_length " + hl);
        }
        if (k == KIND_COMMIT && sl != 0)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "schema_length", sl, "must be 0 for a COMMIT ring");
        }
        final long tail = (long)LONG_VIEW.getAcquire(b, TAIL_POSITION_OFFSET);
        final long head = (long)LONG_VIEW.getAcquire(b, HEAD_POSITION_OFFSET);
        if (head < 0 || tail < head || tail - head > c || (head & (RECORD_ALIGNMENT - 1)) != 0 ||
            (tail & (RECORD_ALIGNMENT - 1)) != 0)
        {
            throw RingFormatException.header(Kind.BAD_HEADER, path, "head_position/tail_position", head + "/" + tail,
                "need 0 <= head <= tail <= head + capacity(" + c + "), both multiples of " + RECORD_ALIGNMENT);
        }

        this.layoutVersion = version;
        this.kind = k;
        this.headerLength = (int)hl;
        this.capacity = c;
        this.mask = c - 1;
        this.fileLength = fl;
        this.instanceId = id;
        this.createdUnixNs = b.getLong(CREATED_UNIX_NS_OFFSET);
        this.partition = p;
        this.maxRecordLength = (int)mr;
        this.schemaLength = (int)sl;
    }

    /**
     * Opens an existing ring file with the {@linkplain OpenOptions#defaults() default options}.
     *
     * @param path the ring file.
     * @return the mapped, validated ring holding one reference (the caller's): {@link #close()} it.
     * @throws RingFormatException if the file is insecure ({@link Kind#PERMISSION}), not ready
     *                             in time ({@link Kind#NOT_READY}) or breaks a rule of FORMAT.md.
     * @throws UncheckedIOException on any other I/O error.
     */
    public static RingFile open(final Path path)
    {
        return open(path, OpenOptions.defaults());
    }

    /**
     * Opens an existing ring file: checks its owner and mode, maps it read-write and
     * validates every header field. While the file does not exist yet or its
     * {@code layout_version} is 0, retries until {@code options}' not-ready timeout.
     *
     * @param path    the ring file.
     * @param options what to expect.
     * @return the mapped, validated ring holding one reference (the caller's): {@link #close()} it.
     * @throws RingFormatException if the file is insecure ({@link Kind#PERMISSION}), not ready
     *                             in time ({@link Kind#NOT_READY}) or breaks a rule of FORMAT.md.
     * @throws UncheckedIOException on any other I/O error.
     */
    public static RingFile open(final Path path, final OpenOptions options)
    {
        final long start = System.nanoTime();
        final BackoffIdleStrategy idle = new BackoffIdleStrategy(0, 0, TimeUnit.MICROSECONDS.toNanos(100),
            TimeUnit.MILLISECONDS.toNanos(10));
        while (true)
        {
            try
            {
                return openOnce(path, options);
            }
            catch (final RingFormatException ex)
            {
                if (ex.kind() != Kind.NOT_READY || System.nanoTime() - start >= options.notReadyTimeoutNs)
                {
                    throw ex;
                }
            }
            idle.idle();
        }
    }

    private static RingFile openOnce(final Path path, final OpenOptions options)
    {
        checkSecure(path);
        final MappedByteBuffer mapping;
        final long size;
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ, StandardOpenOption.WRITE))
        {
            size = channel.size();
            if (size < PAGE_SIZE)
            {
                throw RingFormatException.header(Kind.TRUNCATED, path, "file_size", size,
                    "a ring file is at least " + PAGE_SIZE + " bytes");
            }
            if (size > Integer.MAX_VALUE)
            {
                throw RingFormatException.header(Kind.BAD_HEADER, path, "file_size", size,
                    "larger than any valid ring (header_length + 2^30) a Java mapping can hold");
            }
            mapping = channel.map(FileChannel.MapMode.READ_WRITE, 0, size);
        }
        catch (final NoSuchFileException ex)
        {
            throw new RingFormatException(Kind.NOT_READY, path.toString(), null,
                "ring file \"" + path + "\" does not exist (yet)", ex);
        }
        catch (final AccessDeniedException ex)
        {
            throw new RingFormatException(Kind.PERMISSION, path.toString(), null,
                "cannot open ring file \"" + path + "\" read-write: access denied", ex);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot map ring file \"" + path + "\"", ex);
        }
        try
        {
            return new RingFile(path, mapping, size, options);
        }
        catch (final RuntimeException ex)
        {
            UNSAFE.invokeCleaner(mapping); // nothing else references the mapping yet
            throw ex;
        }
    }

    /**
     * Checks that the ring file and its directory are owned by this process's effective uid
     * and not accessible to group or others (FORMAT.md section 1).
     */
    private static void checkSecure(final Path path)
    {
        final int euid = effectiveUid();
        final Path dir = path.toAbsolutePath().getParent();
        checkOwnerAndMode(path, euid, false);
        if (dir != null)
        {
            checkOwnerAndMode(dir, euid, true);
        }
    }

    private static void checkOwnerAndMode(final Path p, final int euid, final boolean isDir)
    {
        final int uid;
        final Set<PosixFilePermission> perms;
        try
        {
            perms = Files.readAttributes(p, PosixFileAttributes.class).permissions();
            uid = (Integer)Files.getAttribute(p, "unix:uid");
        }
        catch (final NoSuchFileException ex)
        {
            throw new RingFormatException(Kind.NOT_READY, p.toString(), null,
                (isDir ? "ring directory \"" : "ring file \"") + p + "\" does not exist (yet)", ex);
        }
        catch (final AccessDeniedException ex)
        {
            // A directory on the way is not this user's (FORMAT.md: 0700, owner-only).
            throw new RingFormatException(Kind.PERMISSION, p.toString(), null,
                "cannot stat \"" + p + "\": access denied (a ring set of another user?)", ex);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("cannot stat \"" + p + "\"", ex);
        }
        if (uid != euid)
        {
            throw new RingFormatException(Kind.PERMISSION, p.toString(), null,
                "\"" + p + "\" is owned by uid " + uid + ", not by this process's uid " + euid, null);
        }
        for (final PosixFilePermission perm : perms)
        {
            switch (perm)
            {
                case GROUP_READ, GROUP_WRITE, GROUP_EXECUTE, OTHERS_READ, OTHERS_WRITE, OTHERS_EXECUTE ->
                    throw new RingFormatException(Kind.PERMISSION, p.toString(), null,
                        "\"" + p + "\" has mode " + modeString(perms) +
                        "; it must not be accessible to group or others (want " + (isDir ? "0700" : "0600") + ")",
                        null);
                default ->
                {
                }
            }
        }
    }

    private static String modeString(final Set<PosixFilePermission> perms)
    {
        int mode = 0;
        for (final PosixFilePermission perm : perms)
        {
            mode |= 1 << (8 - perm.ordinal()); // OWNER_READ is ordinal 0, bit 0400
        }
        return String.format("0%03o", mode);
    }

    private static int effectiveUid()
    {
        try
        {
            for (final String line : Files.readAllLines(Path.of("/proc/self/status")))
            {
                if (line.startsWith("Uid:"))
                {
                    final String[] ids = line.substring(4).trim().split("\\s+");
                    return Integer.parseInt(ids[1]); // real, effective, saved, fs
                }
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            throw new IllegalStateException("cannot read this process's uid from /proc/self/status", ex);
        }
        throw new IllegalStateException("no Uid: line in /proc/self/status");
    }

    // ---------------------------------------------------------------------------------
    // Reference counting.
    // ---------------------------------------------------------------------------------

    /**
     * Takes a reference to the mapping if it is still mapped.
     *
     * @return {@code true} if a reference was taken (pair it with {@link #release()}),
     * {@code false} if the mapping is already gone.
     */
    public boolean tryRetain()
    {
        int r;
        do
        {
            r = (int)REFS.getVolatile(this);
            if (r <= 0)
            {
                return false;
            }
        }
        while (!REFS.compareAndSet(this, r, r + 1));
        return true;
    }

    /**
     * Takes a reference to the mapping.
     *
     * @return this ring.
     * @throws RingFormatException {@link Kind#CLOSED} if the mapping is already gone.
     */
    public RingFile retain()
    {
        if (!tryRetain())
        {
            throw RingFormatException.ring(Kind.CLOSED, path, "retain of an unmapped ring");
        }
        return this;
    }

    /**
     * Drops a reference taken with {@link #retain()}/{@link #tryRetain()} (or the owner's, via
     * {@link #close()}). The last one unmaps the file: after it, nothing may touch the memory.
     *
     * @throws IllegalStateException if more references are dropped than were taken.
     */
    public void release()
    {
        final int r = (int)REFS.getAndAdd(this, -1) - 1;
        if (r == 0)
        {
            UNSAFE.invokeCleaner(mapping);
        }
        else if (r < 0)
        {
            throw new IllegalStateException("ring \"" + path + "\" released more often than retained (count " + r + ")");
        }
    }

    /**
     * The number of references held.
     *
     * @return 0 once unmapped.
     */
    public int refCount()
    {
        return Math.max(0, (int)REFS.getVolatile(this));
    }

    /**
     * Drops the owner's reference (the one {@link #open} returned). Idempotent. The mapping
     * stays until every other reference is released too.
     */
    @Override
    public void close()
    {
        if (OWNER_CLOSED.compareAndSet(this, 0, 1))
        {
            release();
        }
    }

    // ---------------------------------------------------------------------------------
    // Header values (validated at open; immutable).
    // ---------------------------------------------------------------------------------

    /**
     * The file this ring was opened from.
     *
     * @return the path given to {@link #open}.
     */
    public Path path()
    {
        return path;
    }

    /**
     * {@code layout_version} as read at open.
     *
     * @return {@code major << 16 | minor}.
     */
    public int layoutVersion()
    {
        return layoutVersion;
    }

    /**
     * {@code ring_kind}.
     *
     * @return {@link RingDescriptor#KIND_DATA}, {@link RingDescriptor#KIND_COMMIT} or {@link RingDescriptor#KIND_OUTBOUND}.
     */
    public int kind()
    {
        return kind;
    }

    /**
     * {@code header_length}: file offset of the ring area.
     *
     * @return a multiple of 4096.
     */
    public int headerLength()
    {
        return headerLength;
    }

    /**
     * {@code capacity}: bytes in the ring area.
     *
     * @return a power of two in [4096, 2^30].
     */
    public long capacity()
    {
        return capacity;
    }

    /**
     * {@code file_length}.
     *
     * @return {@code header_length + capacity}, the mapped size.
     */
    public long fileLength()
    {
        return fileLength;
    }

    /**
     * {@code ring_instance_id}: changes whenever the ring is recreated.
     *
     * @return a non-zero u64 (compare with {@link Long#compareUnsigned} if ordering matters).
     */
    public long instanceId()
    {
        return instanceId;
    }

    /**
     * {@code created_unix_ns} (diagnostics).
     *
     * @return wall clock at creation.
     */
    public long createdUnixNs()
    {
        return createdUnixNs;
    }

    /**
     * {@code partition}.
     *
     * @return the virtual partition of a DATA/OUTBOUND ring, -1 for COMMIT.
     */
    public int partition()
    {
        return partition;
    }

    /**
     * {@code max_record_length}: largest record, header included.
     *
     * @return {@code capacity / 2} for DATA/OUTBOUND, 64 for COMMIT.
     */
    public int maxRecordLength()
    {
        return maxRecordLength;
    }

    /**
     * {@code schema_length}.
     *
     * @return bytes of the Arrow IPC Schema message, 0 for COMMIT.
     */
    public int schemaLength()
    {
        return schemaLength;
    }

    /**
     * The Arrow IPC encapsulated Schema message stored in the header, as a read-only view
     * into the mapping (no copy): position 0, limit {@code schema_length}, little-endian.
     * Valid while a reference is held.
     *
     * @return a new read-only view.
     */
    public ByteBuffer schema()
    {
        return buffer.duplicate().position(SCHEMA_START).limit(SCHEMA_START + schemaLength)
            .slice().asReadOnlyBuffer().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * A copy of the schema bytes, safe to keep after the ring is closed.
     *
     * @return {@code schema_length} bytes.
     */
    public byte[] schemaBytes()
    {
        final byte[] bytes = new byte[schemaLength];
        buffer.get(SCHEMA_START, bytes);
        return bytes;
    }

    // ---------------------------------------------------------------------------------
    // Memory.
    // ---------------------------------------------------------------------------------

    /**
     * Native address of file offset 0, for zero-copy wrappers (Arrow {@code ArrowBuf}).
     * Valid while a reference is held.
     *
     * @return the mapping's base address.
     */
    public long address()
    {
        return address;
    }

    /**
     * A new little-endian view of the whole mapping (indexes are file offsets). Valid while a
     * reference is held; the caller owns the view's position and limit.
     *
     * @return a new duplicate.
     */
    public ByteBuffer duplicateBuffer()
    {
        return buffer.duplicate().order(ByteOrder.LITTLE_ENDIAN);
    }

    /**
     * File offset of a stream position: {@code header_length + (position & (capacity - 1))}.
     *
     * @param position a stream position.
     * @return the file offset of its byte.
     */
    public int offsetOf(final long position)
    {
        return (int)(headerLength + (position & mask));
    }

    /**
     * {@code tail_position} (acquire).
     *
     * @return the position of the next byte to claim.
     */
    public long tailPosition()
    {
        return getLongAcquire(TAIL_POSITION_OFFSET);
    }

    /**
     * {@code head_position} (acquire).
     *
     * @return everything before it is released.
     */
    public long headPosition()
    {
        return getLongAcquire(HEAD_POSITION_OFFSET);
    }

    /**
     * Plain read of an {@code i32}.
     *
     * @param offset file offset.
     * @return the value.
     */
    public int getInt(final int offset)
    {
        return buffer.getInt(offset);
    }

    /**
     * Plain read of an {@code i64}.
     *
     * @param offset file offset.
     * @return the value.
     */
    public long getLong(final int offset)
    {
        return buffer.getLong(offset);
    }

    /**
     * Plain write of an {@code i32}.
     *
     * @param offset file offset.
     * @param value  the value.
     */
    public void putInt(final int offset, final int value)
    {
        buffer.putInt(offset, value);
    }

    /**
     * Plain write of an {@code i64}.
     *
     * @param offset file offset.
     * @param value  the value.
     */
    public void putLong(final int offset, final long value)
    {
        buffer.putLong(offset, value);
    }

    /**
     * Acquire read of an {@code i32} at a 4-byte aligned offset.
     *
     * @param offset file offset.
     * @return the value.
     */
    public int getIntAcquire(final int offset)
    {
        return (int)INT_VIEW.getAcquire(buffer, offset);
    }

    /**
     * Volatile read of an {@code i32} at a 4-byte aligned offset.
     *
     * @param offset file offset.
     * @return the value.
     */
    public int getIntVolatile(final int offset)
    {
        return (int)INT_VIEW.getVolatile(buffer, offset);
    }

    /**
     * Release store of an {@code i32} at a 4-byte aligned offset.
     *
     * @param offset file offset.
     * @param value  the value.
     */
    public void putIntRelease(final int offset, final int value)
    {
        INT_VIEW.setRelease(buffer, offset, value);
    }

    /**
     * Compare-and-set of an {@code i32} at a 4-byte aligned offset.
     *
     * @param offset   file offset.
     * @param expected the value expected.
     * @param value    the new value.
     * @return {@code true} if the value was {@code expected} and is now {@code value}.
     */
    public boolean compareAndSetInt(final int offset, final int expected, final int value)
    {
        return INT_VIEW.compareAndSet(buffer, offset, expected, value);
    }

    /**
     * Atomic OR of an {@code i32} at a 4-byte aligned offset.
     *
     * @param offset file offset.
     * @param bits   bits to set.
     * @return the previous value.
     */
    public int getAndBitwiseOrInt(final int offset, final int bits)
    {
        return (int)INT_VIEW.getAndBitwiseOr(buffer, offset, bits);
    }

    /**
     * Acquire read of an {@code i64} at an 8-byte aligned offset.
     *
     * @param offset file offset.
     * @return the value.
     */
    public long getLongAcquire(final int offset)
    {
        return (long)LONG_VIEW.getAcquire(buffer, offset);
    }

    /**
     * Volatile read of an {@code i64} at an 8-byte aligned offset.
     *
     * @param offset file offset.
     * @return the value.
     */
    public long getLongVolatile(final int offset)
    {
        return (long)LONG_VIEW.getVolatile(buffer, offset);
    }

    /**
     * Release store of an {@code i64} at an 8-byte aligned offset.
     *
     * @param offset file offset.
     * @param value  the value.
     */
    public void putLongRelease(final int offset, final long value)
    {
        LONG_VIEW.setRelease(buffer, offset, value);
    }

    /**
     * Compare-and-set of an {@code i64} at an 8-byte aligned offset.
     *
     * @param offset   file offset.
     * @param expected the value expected.
     * @param value    the new value.
     * @return {@code true} if the value was {@code expected} and is now {@code value}.
     */
    public boolean compareAndSetLong(final int offset, final long expected, final long value)
    {
        return LONG_VIEW.compareAndSet(buffer, offset, expected, value);
    }

    // ---------------------------------------------------------------------------------
    // Identity and liveness (FORMAT.md section 2, heartbeats).
    // ---------------------------------------------------------------------------------

    /**
     * Stamps {@code identity} as {@code side}: pid 0 first (so nobody pairs the new start time
     * with the old pid), then start ticks, heartbeat, {@code closed = 0}, and the pid last
     * (release).
     *
     * @param side        the side to attach as.
     * @param identity    the process attaching.
     * @param heartbeatNs the first heartbeat ({@link System#nanoTime()} in production).
     */
    public void attach(final Side side, final ProcessIdentity identity, final long heartbeatNs)
    {
        final int base = side.base;
        putLongRelease(base + IDENTITY_PID_OFFSET, 0);
        putLongRelease(base + IDENTITY_START_TICKS_OFFSET, identity.startTicks());
        putLongRelease(base + IDENTITY_HEARTBEAT_NS_OFFSET, heartbeatNs);
        putLongRelease(base + IDENTITY_CLOSED_OFFSET, 0);
        putLongRelease(base + IDENTITY_PID_OFFSET, identity.pid());
    }

    /**
     * Stores a heartbeat for {@code side} (release).
     *
     * @param side  the side.
     * @param nowNs {@link System#nanoTime()} in production.
     */
    public void heartbeat(final Side side, final long nowNs)
    {
        putLongRelease(side.base + IDENTITY_HEARTBEAT_NS_OFFSET, nowNs);
    }

    /**
     * Sets {@code side}'s closed flag: it finished cleanly (end of stream).
     *
     * @param side the side.
     */
    public void markClosed(final Side side)
    {
        putLongRelease(side.base + IDENTITY_CLOSED_OFFSET, 1);
    }

    /**
     * The pid stored for {@code side}.
     *
     * @param side the side.
     * @return 0 if nobody attached.
     */
    public long peerPid(final Side side)
    {
        return getLongAcquire(side.base + IDENTITY_PID_OFFSET);
    }

    /**
     * Judges the process attached as {@code side}: {@link PeerState#NOT_ATTACHED} if its pid is
     * 0, {@link PeerState#CLOSED} if it set its closed flag, {@link PeerState#DEAD} if the pid
     * is gone, runs a process with another start time, or its heartbeat is older than
     * {@code timeoutNs}, else {@link PeerState#ALIVE}. Reads {@code /proc}: not for the hot path.
     *
     * @param side      the side to judge.
     * @param timeoutNs liveness timeout ({@link #DEFAULT_LIVENESS_TIMEOUT_NS}).
     * @param nowNs     {@link System#nanoTime()}.
     * @return the state.
     */
    public PeerState peerState(final Side side, final long timeoutNs, final long nowNs)
    {
        final int base = side.base;
        final long pid = getLongAcquire(base + IDENTITY_PID_OFFSET);
        if (pid == 0)
        {
            return PeerState.NOT_ATTACHED;
        }
        if (getLongAcquire(base + IDENTITY_CLOSED_OFFSET) != 0)
        {
            return PeerState.CLOSED;
        }
        final long ticks = getLongAcquire(base + IDENTITY_START_TICKS_OFFSET);
        if (!ProcessIdentity.isRunning(pid, ticks))
        {
            return PeerState.DEAD;
        }
        final long heartbeat = getLongAcquire(base + IDENTITY_HEARTBEAT_NS_OFFSET);
        return nowNs - heartbeat > timeoutNs ? PeerState.DEAD : PeerState.ALIVE;
    }

    /**
     * Describes {@code side}'s identity block for error messages.
     *
     * @param side  the side.
     * @param nowNs {@link System#nanoTime()}, to show the heartbeat's age.
     * @return e.g. {@code producer pid=12 start_ticks=345 heartbeat_age_ms=20 closed=0}.
     */
    public String describePeer(final Side side, final long nowNs)
    {
        final int base = side.base;
        return side.label() +
            " pid=" + getLongAcquire(base + IDENTITY_PID_OFFSET) +
            " start_ticks=" + getLongAcquire(base + IDENTITY_START_TICKS_OFFSET) +
            " heartbeat_age_ms=" + TimeUnit.NANOSECONDS.toMillis(nowNs - getLongAcquire(base + IDENTITY_HEARTBEAT_NS_OFFSET)) +
            " closed=" + getLongAcquire(base + IDENTITY_CLOSED_OFFSET);
    }

    @Override
    public String toString()
    {
        return "RingFile{path=\"" + path + "\", kind=" + kindName(kind) + ", capacity=" + capacity +
            ", partition=" + partition + ", instance=0x" + Long.toHexString(instanceId) + ", refs=" + refCount() + '}';
    }
}
