package dev.pubsubshm.arrow;

import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.function.LongConsumer;

import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.MapVector;
import org.apache.arrow.vector.complex.StructVector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.RingFile;

import static dev.pubsubshm.ring.RingDescriptor.KIND_DATA;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The JVM heap a {@link RingBatchLoader#load} costs: a fixed amount per batch (the
 * flatbuffer accessors, Arrow's per-batch ArrowBuf slices and ledger bookkeeping), nothing
 * per row, measured with {@code ThreadMXBean.getCurrentThreadAllocatedBytes} over many loads
 * after a warm-up. The cross-process test (ringbuf/arrowbatch/crossproc_test.go, -tags
 * crossproc) checks the end-to-end figure: below 1 byte per 1 KiB message over 100,000
 * messages in a separate JVM, with batches of 8 MiB (about 8,000 such messages).
 */
class HeapAllocationTest
{
    /** Per loaded batch, after warm-up, whatever its rows. */
    private static final long MAX_BYTES_PER_BATCH = 16 * 1024;
    private static final int WARMUP = 3_000;
    private static final int MEASURED = 6_000;

    @TempDir
    Path dir;

    private final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();

    private static List<DataRecord> pollAll(final DataRingReader reader)
    {
        final List<DataRecord> records = new ArrayList<>();
        for (DataRecord r = new DataRecord(); reader.poll(r); r = new DataRecord())
        {
            records.add(r);
        }
        assertFalse(records.isEmpty());
        return records;
    }

    /**
     * Loads {@code records} (polled, never released: each is loaded again and again)
     * round-robin {@code WARMUP} times, then {@code MEASURED} times; returns the heap bytes
     * per load of the measured loop.
     */
    private double bytesPerLoad(final RingBatchLoader loader, final List<DataRecord> records, final String what)
    {
        final long[] releases = new long[1];
        final LongConsumer counting = position -> releases[0]++;
        final int n = records.size();
        for (int i = 0; i < WARMUP; i++)
        {
            loader.load(records.get(i % n), counting);
        }
        assertTrue(threads.isThreadAllocatedMemorySupported() && threads.isThreadAllocatedMemoryEnabled());
        final long before = threads.getCurrentThreadAllocatedBytes();
        for (int i = 0; i < MEASURED; i++)
        {
            loader.load(records.get(i % n), counting);
        }
        final long allocated = threads.getCurrentThreadAllocatedBytes() - before;
        loader.clear();
        assertEquals(WARMUP + MEASURED, releases[0], "every load was released once (by the next load or clear)");
        assertEquals(0, loader.allocator().getAllocatedMemory());
        final double perLoad = (double)allocated / MEASURED;
        System.out.printf("HeapAllocationTest %s: %.0f heap bytes per loaded batch over %d loads%n", what, perLoad, MEASURED);
        return perLoad;
    }

    @Test
    void aLoadCostsAFewKibOfHeapPerBatchAndNothingPerRow()
    {
        final double small;
        try (RingFile ring = RingFile.open(ArrowRings.copyGolden(dir), RingFile.OpenOptions.defaults().kind(KIND_DATA));
             RootAllocator allocator = new RootAllocator();
             DataRingReader reader = new DataRingReader(ring);
             RingBatchLoader loader = new RingBatchLoader(ring, allocator, true))
        {
            small = bytesPerLoad(loader, pollAll(reader), "golden batches (1, 9, 40 rows)");
            assertTrue(small < MAX_BYTES_PER_BATCH, small + " bytes per batch");
        }

        final int rows = 1024;
        final ArrowRings.Batch batch = ArrowRings.messageBatch(rows, 1024);
        try (RingFile ring = RingFile.open(ArrowRings.createRing(dir, "data-1.ring", 4 << 20), RingFile.OpenOptions.defaults().kind(KIND_DATA));
             RootAllocator allocator = new RootAllocator();
             DataRingReader reader = new DataRingReader(ring);
             RingBatchLoader loader = new RingBatchLoader(ring, allocator, true))
        {
            final ArrowRings.Producer producer = new ArrowRings.Producer(ring);
            producer.write(batch);
            producer.write(batch);
            final List<DataRecord> records = pollAll(reader);
            assertEquals(2, records.size());

            // The Java-written batch reads back as written, zero-copy.
            loader.load(records.get(0), position -> { });
            assertMessageBatch(loader.root(), rows, 1024);
            ArrowRings.assertZeroCopy(ring, loader.root());
            assertEquals(records.get(0).bodyLength(), loader.allocator().getAllocatedMemory(), "Arrow allocated nothing besides the body");
            loader.clear();

            final double large = bytesPerLoad(loader, records, rows + " rows x 1 KiB");
            System.out.printf("HeapAllocationTest: %.2f heap bytes per 1 KiB message in batches of %d%n", large / rows, rows);
            assertTrue(large < MAX_BYTES_PER_BATCH, large + " bytes per batch");
            assertTrue(large < small + 2048, "1024 rows cost " + large + " bytes per batch, the golden batches (1 to 40 rows) " + small +
                ": per-batch, not per-row");
        }
    }

    /** Checks every value of {@link ArrowRings#messageBatch}. */
    static void assertMessageBatch(final VectorSchemaRoot root, final int rows, final int payloadSize)
    {
        assertEquals(rows, root.getRowCount());
        final VarCharVector id = (VarCharVector)root.getVector("message_id");
        final TimeStampMicroTZVector time = (TimeStampMicroTZVector)root.getVector("publish_time");
        final VarBinaryVector data = (VarBinaryVector)root.getVector("data");
        final MapVector attributes = (MapVector)root.getVector("attributes");
        final StructVector entries = (StructVector)attributes.getDataVector();
        final VarCharVector keys = (VarCharVector)entries.getChild("key");
        final VarCharVector values = (VarCharVector)entries.getChild("value");
        final VarCharVector orderingKey = (VarCharVector)root.getVector("ordering_key");
        final IntVector attempt = (IntVector)root.getVector("delivery_attempt");
        for (int i = 0; i < rows; i++)
        {
            assertEquals("m-" + i, new String(id.get(i), StandardCharsets.UTF_8));
            assertEquals(1_700_000_000_000_000L + i, time.get(i));
            final byte[] p = data.get(i);
            assertEquals(payloadSize, p.length);
            for (int j = 0; j < payloadSize; j++)
            {
                if (p[j] != (byte)(i * 31 + j))
                {
                    fail("data byte " + j + " of row " + i);
                }
            }
            final int start = attributes.getOffsetBuffer().getInt(4L * i);
            assertEquals(i % 3, attributes.getOffsetBuffer().getInt(4L * (i + 1)) - start, "attributes of row " + i);
            for (int e = 0; e < i % 3; e++)
            {
                assertEquals("k" + e, new String(keys.get(start + e), StandardCharsets.UTF_8));
                if (e == 1 && i % 7 == 0)
                {
                    assertTrue(values.isNull(start + e));
                }
                else
                {
                    assertEquals("v" + i + "." + e, new String(values.get(start + e), StandardCharsets.UTF_8));
                }
            }
            if (i % 2 == 0)
            {
                assertTrue(orderingKey.isNull(i));
            }
            else
            {
                assertEquals("key-" + i % 10, new String(orderingKey.get(i), StandardCharsets.UTF_8));
            }
            if (i % 5 == 0)
            {
                assertTrue(attempt.isNull(i));
            }
            else
            {
                assertEquals(i % 100, attempt.get(i));
            }
        }
    }
}
