package dev.pubsubshm.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.DirectoryStream;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.HashSet;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.regex.Pattern;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingScanner;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFormatException;

/**
 * Scans the DATA rings of one ring set on this host without consuming anything: for each
 * {@code data-<p>.ring}, the record headers from {@code head_position} to the last complete
 * record. Incremental: records already scanned stay known (the producer never touches
 * anything at or above the head), records the head has passed are dropped, and only what
 * was published since the last scan is read. Holding the rings through the
 * {@link RingRegistry} makes this JVM their (heart-beating) consumer while the scanner is
 * open.
 *
 * <p>Not thread-safe: one owner (the driver's stream, or the executor plugin's poller).
 */
final class RingSetScanner implements AutoCloseable
{
    private static final Pattern DATA_RING = Pattern.compile("data-(0|[1-9][0-9]*)\\.ring");

    private final Path dir;
    private final String host;
    private final Map<Path, Tracker> trackers = new HashMap<>();

    /**
     * @param dir  the ring set directory.
     * @param host the name Spark knows this host by (goes into the views).
     */
    RingSetScanner(final Path dir, final String host)
    {
        this.dir = dir.toAbsolutePath().normalize();
        this.host = host;
    }

    /** @return the ring set directory. */
    Path dir()
    {
        return dir;
    }

    /**
     * Whether the ring set is here: the directory with a commit ring and at least one DATA ring.
     *
     * @param dir a ring set directory.
     * @return {@code true} if it looks like a ring set.
     */
    static boolean isRingSet(final Path dir)
    {
        if (!Files.isDirectory(dir) || !Files.exists(dir.resolve("commit.ring")))
        {
            return false;
        }
        try (DirectoryStream<Path> files = Files.newDirectoryStream(dir))
        {
            for (final Path f : files)
            {
                if (DATA_RING.matcher(f.getFileName().toString()).matches())
                {
                    return true;
                }
            }
        }
        catch (final IOException ex)
        {
            return false;
        }
        return false;
    }

    /**
     * Scans every DATA ring of the set.
     *
     * @return a view per ring, ordered by partition; empty if the set directory is gone.
     * @throws RingFormatException if a ring is corrupt (the message names the file and record).
     */
    List<RingView> scan()
    {
        final List<Path> files = new ArrayList<>();
        try (DirectoryStream<Path> ds = Files.newDirectoryStream(dir))
        {
            for (final Path f : ds)
            {
                if (DATA_RING.matcher(f.getFileName().toString()).matches())
                {
                    files.add(f);
                }
            }
        }
        catch (final NoSuchFileException ex)
        {
            closeTrackers();
            return List.of();
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("pubsub-shm: cannot list ring set \"" + dir + "\"", ex);
        }
        files.sort((a, b) -> Integer.compare(partitionOf(a), partitionOf(b)));
        final Set<Path> seen = new HashSet<>();
        final List<RingView> views = new ArrayList<>(files.size());
        for (final Path f : files)
        {
            seen.add(f);
            Tracker t = trackers.get(f);
            if (t != null && !t.handle.isCurrent())
            {
                t.close();
                trackers.remove(f);
                t = null;
            }
            if (t == null)
            {
                final RingRegistry.Handle h;
                try
                {
                    h = RingRegistry.get().acquire(f);
                }
                catch (final RingUnavailableException ex)
                {
                    continue; // removed or replaced between the listing and the open: next scan
                }
                t = new Tracker(h);
                trackers.put(f, t);
            }
            views.add(t.refresh(host));
        }
        for (final Iterator<Map.Entry<Path, Tracker>> it = trackers.entrySet().iterator(); it.hasNext(); )
        {
            final Map.Entry<Path, Tracker> e = it.next();
            if (!seen.contains(e.getKey()))
            {
                e.getValue().close();
                it.remove();
            }
        }
        return views;
    }

    private static int partitionOf(final Path f)
    {
        final String name = f.getFileName().toString();
        return Integer.parseInt(name.substring("data-".length(), name.length() - ".ring".length()));
    }

    private void closeTrackers()
    {
        for (final Tracker t : trackers.values())
        {
            t.close();
        }
        trackers.clear();
    }

    /** Releases every ring. */
    @Override
    public void close()
    {
        closeTrackers();
    }

    /** The incremental scan of one ring incarnation. */
    private static final class Tracker implements AutoCloseable
    {
        private final RingRegistry.Handle handle;
        private final DataRingScanner scanner;
        private final DataRecord record = new DataRecord();
        private final String path;
        // Known records from the oldest still in the ring: batch ids firstBatch, firstBatch+1, ...
        private long firstBatch;
        private int count;
        private int[] rows = new int[64];
        private long[] bytes = new long[64];
        private long[] positions = new long[64];
        private long oldestProduced;
        /** Position after the last known record (the next one to scan). */
        private long scanEnd;
        /** The batch id the next record must carry, 0 if unknown. */
        private long nextBatch;

        Tracker(final RingRegistry.Handle handle)
        {
            this.handle = handle;
            this.scanner = new DataRingScanner(handle.ring());
            this.path = handle.path().toString();
            this.scanEnd = handle.ring().headPosition();
        }

        RingView refresh(final String host)
        {
            for (int attempt = 0; ; attempt++)
            {
                final long head = handle.ring().headPosition();
                dropBelow(head);
                if (scanEnd < head)
                {
                    reset(head);
                }
                scanner.seek(scanEnd);
                boolean stale = false;
                scan:
                while (true)
                {
                    switch (scanner.next(record))
                    {
                        case RECORD -> append();
                        case STALE ->
                        {
                            stale = true;
                            break scan;
                        }
                        case END, IN_PROGRESS ->
                        {
                            break scan;
                        }
                    }
                }
                if (!stale)
                {
                    break;
                }
                if (attempt > 1000)
                {
                    throw new IllegalStateException("pubsub-shm: the head of \"" + path + "\" keeps moving under the scanner");
                }
                reset(handle.ring().headPosition());
            }
            long totalRows = 0;
            long totalBytes = 0;
            for (int i = 0; i < count; i++)
            {
                totalRows += rows[i];
                totalBytes += bytes[i];
            }
            final long last = count == 0 ? 0 : firstBatch + count - 1;
            return new RingView(host, path, handle.ring().partition(), handle.instanceId(), count == 0 ? 0 : firstBatch,
                last, totalRows, totalBytes, count == 0 ? 0 : oldestProduced, firstBatch,
                Arrays.copyOf(rows, count), Arrays.copyOf(bytes, count), Arrays.copyOf(positions, count));
        }

        private void append()
        {
            final long batch = record.batchId();
            if (nextBatch != 0 && batch != nextBatch)
            {
                throw RingFormatException.record(handle.path(), record.position(), "batch_id", batch,
                    "must follow the previous record's batch_id " + (nextBatch - 1));
            }
            if (count == rows.length)
            {
                rows = Arrays.copyOf(rows, count * 2);
                bytes = Arrays.copyOf(bytes, count * 2);
                positions = Arrays.copyOf(positions, count * 2);
            }
            if (count == 0)
            {
                firstBatch = batch;
                oldestProduced = record.producedUnixNs();
            }
            rows[count] = record.type() == RingDescriptor.TYPE_ARROW || record.type() == RingDescriptor.TYPE_RAW ? record.rowCount() : 0;
            bytes[count] = record.bodyLength();
            positions[count] = record.position();
            count++;
            nextBatch = batch + 1;
            scanEnd = scanner.cursor();
        }

        /** Forgets the records the head has passed (released: committed). */
        private void dropBelow(final long head)
        {
            int drop = 0;
            while (drop < count && positions[drop] < head)
            {
                drop++;
            }
            if (drop == 0)
            {
                return;
            }
            System.arraycopy(rows, drop, rows, 0, count - drop);
            System.arraycopy(bytes, drop, bytes, 0, count - drop);
            System.arraycopy(positions, drop, positions, 0, count - drop);
            count -= drop;
            firstBatch += drop;
            oldestProduced = 0;
            if (count > 0)
            {
                oldestProduced = handle.ring().getLong(handle.ring().offsetOf(positions[0]) +
                    RingDescriptor.RECORD_PRODUCED_UNIX_NS_OFFSET);
            }
        }

        /** Starts over from {@code head}: what is below it was released by someone else. */
        private void reset(final long head)
        {
            count = 0;
            scanEnd = head;
            nextBatch = 0;
        }

        @Override
        public void close()
        {
            scanner.close();
            handle.close();
        }
    }
}
