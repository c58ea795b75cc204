package dev.pubsubshm.spark;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.TestRingsAccess;

/**
 * A ring set written by Java test helpers exactly per FORMAT.md (RAW records), for unit tests
 * of the scanner, committer and plugin without Go: {@code data-<p>.ring} plus
 * {@code commit.ring} in a private directory, a producer per DATA ring, and a reader of the
 * commit ring.
 */
final class JavaRingSet implements AutoCloseable
{
    /** One COMMIT-ring record. */
    record Commit(int type, int partition, long instanceId, long first, long last)
    {
    }

    final Path dir;
    private final List<RingFile> rings = new ArrayList<>();
    private final List<TestRingsAccess.Producer> producers = new ArrayList<>();
    private final RingFile commit;

    JavaRingSet(final Path dir, final int partitions, final long capacity)
    {
        this.dir = dir;
        try
        {
            Files.createDirectories(dir);
            Files.setPosixFilePermissions(dir, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
        }
        catch (final java.io.IOException ex)
        {
            throw new java.io.UncheckedIOException(ex);
        }
        for (int p = 0; p < partitions; p++)
        {
            final Path file = TestRingsAccess.createData(dir, p, capacity);
            setInstanceId(file, newInstanceId());
            final RingFile ring = RingFile.open(file);
            rings.add(ring);
            producers.add(TestRingsAccess.producer(ring));
        }
        commit = RingFile.open(TestRingsAccess.createCommit(dir, 64 * 1024));
    }

    private static final java.util.concurrent.atomic.AtomicLong INSTANCES =
        new java.util.concurrent.atomic.AtomicLong(System.nanoTime() | 1L << 63);

    /** A fresh non-zero instance id (high bit set: exercises unsigned handling). */
    static long newInstanceId()
    {
        return INSTANCES.incrementAndGet() * 0x9E3779B97F4A7C15L | 1L << 63;
    }

    /** Overwrites a ring file's {@code ring_instance_id} (before anyone maps it). */
    static void setInstanceId(final Path file, final long id)
    {
        try (java.nio.channels.FileChannel ch = java.nio.channels.FileChannel.open(file,
            java.nio.file.StandardOpenOption.WRITE))
        {
            final java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(8).order(java.nio.ByteOrder.LITTLE_ENDIAN).putLong(0, id);
            ch.write(b, RingDescriptor.RING_INSTANCE_ID_OFFSET);
        }
        catch (final java.io.IOException ex)
        {
            throw new java.io.UncheckedIOException(ex);
        }
    }

    /**
     * Replaces a partition's ring by a new incarnation (new file, new instance id), as pullerd
     * does after a reader death; the old producer is closed.
     */
    void recreate(final int partition, final long capacity)
    {
        producers.get(partition).close();
        rings.get(partition).close();
        final Path tmp = dir.resolve("tmp-" + partition);
        try
        {
            Files.createDirectories(tmp);
            Files.setPosixFilePermissions(tmp, java.nio.file.attribute.PosixFilePermissions.fromString("rwx------"));
            final Path file = TestRingsAccess.createData(tmp, partition, capacity);
            setInstanceId(file, newInstanceId());
            Files.move(file, path(partition), java.nio.file.StandardCopyOption.ATOMIC_MOVE,
                java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            Files.delete(tmp);
        }
        catch (final java.io.IOException ex)
        {
            throw new java.io.UncheckedIOException(ex);
        }
        final RingFile ring = RingFile.open(path(partition));
        rings.set(partition, ring);
        producers.set(partition, TestRingsAccess.producer(ring));
    }

    RingFile ring(final int partition)
    {
        return rings.get(partition);
    }

    Path path(final int partition)
    {
        return dir.resolve("data-" + partition + ".ring");
    }

    /** Writes a RAW record of {@code n} bytes into a partition's ring; returns its batch id. */
    long write(final int partition, final int n)
    {
        final TestRingsAccess.Producer p = producers.get(partition);
        final long id = p.nextBatchId();
        if (!p.tryWriteRaw(new byte[n]))
        {
            throw new IllegalStateException("ring " + partition + " is full");
        }
        return id;
    }

    /** Every published COMMIT-ring record so far, in order. */
    List<Commit> commits()
    {
        final List<Commit> out = new ArrayList<>();
        final long tail = commit.tailPosition();
        for (long pos = commit.headPosition(); pos < tail; pos += RingDescriptor.COMMIT_RECORD_LENGTH)
        {
            final int off = commit.offsetOf(pos);
            if (commit.getIntAcquire(off + RingDescriptor.COMMIT_LENGTH_OFFSET) != RingDescriptor.COMMIT_RECORD_LENGTH)
            {
                continue;
            }
            out.add(new Commit(commit.getInt(off + RingDescriptor.COMMIT_TYPE_OFFSET),
                commit.getInt(off + RingDescriptor.COMMIT_PARTITION_OFFSET),
                commit.getLong(off + RingDescriptor.COMMIT_DATA_RING_INSTANCE_ID_OFFSET),
                commit.getLong(off + RingDescriptor.COMMIT_FIRST_BATCH_ID_OFFSET),
                commit.getLong(off + RingDescriptor.COMMIT_LAST_BATCH_ID_OFFSET)));
        }
        return out;
    }

    /** Batch ids committed for a partition, in commit order, expanded from the ranges. */
    List<Long> committedBatches(final int partition)
    {
        final List<Long> ids = new ArrayList<>();
        for (final Commit c : commits())
        {
            if (c.partition() == partition && c.type() == RingDescriptor.COMMIT_TYPE_COMMIT)
            {
                for (long b = c.first(); b <= c.last(); b++)
                {
                    ids.add(b);
                }
            }
        }
        return ids;
    }

    @Override
    public void close()
    {
        for (final TestRingsAccess.Producer p : producers)
        {
            p.close();
        }
        for (final RingFile r : rings)
        {
            r.close();
        }
        commit.close();
    }
}
