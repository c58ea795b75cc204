package dev.pubsubshm.bench;

import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.function.LongConsumer;
import java.util.zip.CRC32C;

import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VectorSchemaRoot;

import dev.pubsubshm.arrow.RingBatchLoader;
import dev.pubsubshm.ring.BackoffIdleStrategy;
import dev.pubsubshm.ring.CommitRingWriter;
import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.IdleStrategy;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

/**
 * The JVM side of {@code make bench-ring} and of the zero-copy cross-process test: reads
 * every ARROW batch of {@code DIR/data-P.ring} zero-copy ({@link RingBatchLoader}), verifies
 * the checksum of every payload (for n >= 4 bytes the last 4 are the little-endian CRC32C
 * of the rest; shorter payloads are zero), releases the batch, and commits it back through
 * {@code DIR/commit.ring}. Runs until the producer closes the stream, then prints one JSON
 * line: msgs, bytes, batches (all), then measured_msgs, measured_bytes, elapsed_ns,
 * alloc_bytes (this thread's heap allocation, from ThreadMXBean) over what came after the
 * warm-up batches ({@code --warmup-batches}, default 1: class loading and JIT), gc_count, gc_time_ms, cpu_ns (the
 * whole JVM), checksum_failures, p50/p99 latency (publish_time to read, microseconds).
 *
 * <p>Options: {@code --dir D --partition P [--timeout-s S] [--check-zero-copy]
 * [--max-alloc-per-msg X]}. With {@code --check-zero-copy} every buffer of every loaded
 * vector must lie inside the ring mapping (the check's own allocation is not counted);
 * with {@code --max-alloc-per-msg} the run fails if the heap allocation per message is
 * higher. Exit status 0 only if every check held.
 */
public final class RingBenchConsumer
{
    private RingBenchConsumer()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        Path dir = null;
        int partition = 0;
        long timeoutS = 60;
        boolean checkZeroCopy = false;
        double maxAllocPerMsg = -1;
        int warmupBatches = 1;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--partition" -> partition = Integer.parseInt(args[++i]);
                case "--timeout-s" -> timeoutS = Long.parseLong(args[++i]);
                case "--check-zero-copy" -> checkZeroCopy = true;
                case "--max-alloc-per-msg" -> maxAllocPerMsg = Double.parseDouble(args[++i]);
                case "--warmup-batches" -> warmupBatches = Integer.parseInt(args[++i]);
                default ->
                {
                    System.err.println("RingBenchConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (dir == null)
        {
            System.err.println("RingBenchConsumer: --dir is required");
            System.exit(2);
        }
        try
        {
            final String json = run(dir, partition, timeoutS, checkZeroCopy, maxAllocPerMsg, warmupBatches);
            System.out.println(json);
        }
        catch (final Exception ex)
        {
            System.err.println("RingBenchConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    static String run(final Path dir, final int partition, final long timeoutS, final boolean checkZeroCopy, final double maxAllocPerMsg,
        final int warmupBatches)
    {
        final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();
        final com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean)ManagementFactory.getOperatingSystemMXBean();
        try (RingFile data = RingFile.open(dir.resolve("data-" + partition + ".ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_DATA));
             RingFile commitRing = RingFile.open(dir.resolve("commit.ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_COMMIT));
             RootAllocator allocator = new RootAllocator();
             DataRingReader reader = new DataRingReader(data);
             CommitRingWriter commits = new CommitRingWriter(commitRing);
             RingBatchLoader loader = new RingBatchLoader(data, allocator, true))
        {
            final long instanceId = data.instanceId();
            final long mapStart = data.address();
            final long mapEnd = mapStart + data.fileLength();
            final LongConsumer release = reader::release; // one lambda object for the whole run
            final DataRecord record = new DataRecord();
            final IdleStrategy idle = new BackoffIdleStrategy();
            final CRC32C crc = new CRC32C();
            final ByteBuffer view = data.duplicateBuffer();
            final LatencyHistogram latency = new LatencyHistogram();
            final VectorSchemaRoot root = loader.root();

            long msgs = 0, bytes = 0, batches = 0, failures = 0, excludedAlloc = 0;
            long warmMsgs = 0, warmBytes = 0;
            long startNs = 0, startAlloc = 0, startCpu = 0;
            long lastWorkNs = System.nanoTime();
            final long[] gc0 = gcTotals();
            while (true)
            {
                if (!reader.poll(record))
                {
                    if (reader.isEndOfStream())
                    {
                        break;
                    }
                    if (System.nanoTime() - lastWorkNs > TimeUnit.SECONDS.toNanos(timeoutS))
                    {
                        throw new IllegalStateException("no batch for " + timeoutS + " s (producer: " + reader.producerState() + ")");
                    }
                    idle.idle(0);
                    continue;
                }
                idle.reset();
                lastWorkNs = System.nanoTime();
                if (record.type() != RingDescriptor.TYPE_ARROW)
                {
                    reader.release(record.position());
                    continue;
                }
                if (batches == warmupBatches)
                {
                    // Measurements start after the warm-up batches (class loading, JIT).
                    startNs = System.nanoTime();
                    startAlloc = threads.getCurrentThreadAllocatedBytes();
                    startCpu = os.getProcessCpuTime();
                    excludedAlloc = 0;
                    warmMsgs = msgs;
                    warmBytes = bytes;
                }
                final long batchId = record.batchId();
                loader.load(record, release);
                if (checkZeroCopy)
                {
                    final long a0 = threads.getCurrentThreadAllocatedBytes();
                    for (final FieldVector v : root.getFieldVectors())
                    {
                        checkInside(v, mapStart, mapEnd);
                    }
                    excludedAlloc += threads.getCurrentThreadAllocatedBytes() - a0;
                }
                final int rows = root.getRowCount();
                final VarBinaryVector payload = (VarBinaryVector)root.getVector(2);
                final ArrowBuf offsets = payload.getOffsetBuffer();
                final ArrowBuf values = payload.getDataBuffer();
                final long valuesFileOffset = values.memoryAddress() - mapStart;
                int start = offsets.getInt(0);
                for (int r = 0; r < rows; r++)
                {
                    final int end = offsets.getInt((long)(r + 1) * 4);
                    final int n = end - start;
                    if (n >= 4)
                    {
                        crc.reset();
                        view.limit((int)(valuesFileOffset + end - 4)).position((int)(valuesFileOffset + start));
                        crc.update(view);
                        if ((int)crc.getValue() != values.getInt(end - 4))
                        {
                            failures++;
                        }
                    }
                    else
                    {
                        for (int k = start; k < end; k++)
                        {
                            if (values.getByte(k) != 0)
                            {
                                failures++;
                                break;
                            }
                        }
                    }
                    bytes += n;
                    start = end;
                }
                final TimeStampMicroTZVector ts = (TimeStampMicroTZVector)root.getVector(1);
                if (rows > 0)
                {
                    latency.record(System.currentTimeMillis() * 1000 - ts.get(0), rows);
                }
                msgs += rows;
                batches++;
                loader.clear(); // the record goes back to the ring now
                commits.commit(partition, instanceId, batchId, batchId);
            }
            if (batches <= warmupBatches)
            {
                throw new IllegalStateException("only " + batches + " batches: nothing measured after " + warmupBatches + " warm-up batches");
            }
            final long measuredMsgs = msgs - warmMsgs;
            final long measuredBytes = bytes - warmBytes;
            final long elapsed = System.nanoTime() - startNs;
            final long alloc = threads.getCurrentThreadAllocatedBytes() - startAlloc - excludedAlloc;
            final long cpu = os.getProcessCpuTime() - startCpu;
            final long[] gc1 = gcTotals();
            if (allocator.getAllocatedMemory() != 0 || loader.allocator().getAllocatedMemory() != 0)
            {
                throw new IllegalStateException("Arrow allocator holds " + loader.allocator().getAllocatedMemory() + " bytes after the last release");
            }
            if (failures > 0)
            {
                throw new IllegalStateException(failures + " payloads failed their checksum");
            }
            final double perMsg = measuredMsgs == 0 ? 0 : (double)alloc / measuredMsgs;
            if (maxAllocPerMsg >= 0 && perMsg >= maxAllocPerMsg)
            {
                throw new IllegalStateException("heap allocation " + perMsg + " bytes per message over " + measuredMsgs + " messages; limit " + maxAllocPerMsg);
            }
            return "{\"msgs\":" + msgs + ",\"bytes\":" + bytes + ",\"batches\":" + batches +
                ",\"measured_msgs\":" + measuredMsgs + ",\"measured_bytes\":" + measuredBytes + ",\"elapsed_ns\":" + elapsed +
                ",\"alloc_bytes\":" + alloc + ",\"gc_count\":" + (gc1[0] - gc0[0]) + ",\"gc_time_ms\":" + (gc1[1] - gc0[1]) +
                ",\"cpu_ns\":" + cpu + ",\"checksum_failures\":" + failures +
                ",\"p50_latency_us\":" + latency.percentile(0.50) + ",\"p99_latency_us\":" + latency.percentile(0.99) +
                ",\"p999_latency_us\":" + latency.percentile(0.999) + "}";
        }
    }

    private static void checkInside(final FieldVector v, final long start, final long end)
    {
        for (final ArrowBuf b : v.getFieldBuffers())
        {
            if (b.capacity() > 0 && (b.memoryAddress() < start || b.memoryAddress() + b.capacity() > end))
            {
                throw new IllegalStateException("vector " + v.getField().getName() + " has a buffer at " + b.memoryAddress() +
                    " (+" + b.capacity() + ") outside the ring mapping [" + start + ", " + end + "): not zero-copy");
            }
        }
        for (final FieldVector c : v.getChildrenFromFields())
        {
            checkInside(c, start, end);
        }
    }

    private static long[] gcTotals()
    {
        long count = 0, time = 0;
        for (final GarbageCollectorMXBean gc : ManagementFactory.getGarbageCollectorMXBeans())
        {
            count += Math.max(0, gc.getCollectionCount());
            time += Math.max(0, gc.getCollectionTime());
        }
        return new long[] {count, time};
    }
}
