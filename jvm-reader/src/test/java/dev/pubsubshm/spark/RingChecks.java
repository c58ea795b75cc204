package dev.pubsubshm.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.zip.CRC32C;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingScanner;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

/** Test-side looks into rings and checkpoints, independent of the source's own classes. */
final class RingChecks
{
    private RingChecks()
    {
    }

    /** Rows of all complete records from head to tail in every DATA ring of a set. */
    static long rowsInRings(final Path set, final int partitions)
    {
        long rows = 0;
        for (int p = 0; p < partitions; p++)
        {
            final Path f = set.resolve("data-" + p + ".ring");
            if (!Files.exists(f))
            {
                continue;
            }
            try (RingFile ring = RingFile.open(f); DataRingScanner s = new DataRingScanner(ring))
            {
                final DataRecord r = new DataRecord();
                while (s.next(r) == DataRingScanner.Status.RECORD)
                {
                    rows += r.rowCount();
                }
            }
        }
        return rows;
    }

    /**
     * Asserts that the batches {@code (start, end]} of every ring are still in their ring
     * and none is RELEASED: nothing of this micro-batch has been committed back yet.
     */
    static void assertNotReleased(final Path set, final RingOffset start, final RingOffset end)
    {
        for (final RingOffset.Entry e : end.entries())
        {
            final RingOffset.Entry s = start.get(e.instanceId());
            final long from = s != null ? s.batch() : e.base();
            if (e.batch() <= from)
            {
                continue;
            }
            final Path f = set.resolve("data-" + e.partition() + ".ring");
            try (RingFile ring = RingFile.open(f); DataRingScanner sc = new DataRingScanner(ring))
            {
                if (ring.instanceId() != e.instanceId())
                {
                    throw new AssertionError(f + " was recreated during the test");
                }
                final DataRecord r = new DataRecord();
                boolean first = true;
                while (sc.next(r) == DataRingScanner.Status.RECORD && r.batchId() <= e.batch())
                {
                    if (first && r.batchId() > from + 1)
                    {
                        throw new AssertionError(f + ": batch " + (from + 1) + " of the running micro-batch was " +
                            "released already (the ring starts at batch " + r.batchId() + ")");
                    }
                    first = false;
                    if (r.batchId() > from && (r.state() & RingDescriptor.STATE_RELEASED) != 0)
                    {
                        throw new AssertionError(f + ": batch " + r.batchId() + " of the running micro-batch (" + from +
                            ", " + e.batch() + "] is RELEASED (committed) before the micro-batch committed");
                    }
                }
            }
        }
    }

    /** The end offset Spark logged for micro-batch {@code batchId} in a checkpoint. */
    static RingOffset loggedEnd(final Path checkpoint, final long batchId)
    {
        try
        {
            final List<String> lines = Files.readAllLines(checkpoint.resolve("offsets").resolve(Long.toString(batchId)),
                StandardCharsets.UTF_8);
            return RingOffset.fromJson(lines.get(lines.size() - 1));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** The start offset of micro-batch {@code batchId}: the previous end, or the initial offset. */
    static RingOffset loggedStart(final Path checkpoint, final long batchId)
    {
        if (batchId > 0)
        {
            return loggedEnd(checkpoint, batchId - 1);
        }
        try
        {
            return RingOffset.fromJson(Files.readString(checkpoint.resolve("sources/0")
                .resolve(PubSubShmMicroBatchStream.INITIAL_OFFSET_FILE)));
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /** Whether a payload carries bench/synth's checksum (CRC32C of the rest in the last 4 bytes, LE). */
    static boolean checksumOk(final byte[] p)
    {
        if (p.length < 4)
        {
            for (final byte b : p)
            {
                if (b != 0)
                {
                    return false;
                }
            }
            return true;
        }
        final CRC32C crc = new CRC32C();
        crc.update(p, 0, p.length - 4);
        final int want = (p[p.length - 4] & 0xFF) | (p[p.length - 3] & 0xFF) << 8 | (p[p.length - 2] & 0xFF) << 16 |
            (p[p.length - 1] & 0xFF) << 24;
        return (int)crc.getValue() == want;
    }
}
