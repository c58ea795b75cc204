package dev.pubsubshm.bench;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.LongConsumer;

import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;

import dev.pubsubshm.arrow.RingBatchLoader;
import dev.pubsubshm.bench.check.MessageBatchCheck;
import dev.pubsubshm.bench.common.JvmMeter;
import dev.pubsubshm.bench.common.LatencyHistogram;
import dev.pubsubshm.bench.common.MicroClock;
import dev.pubsubshm.ring.BackoffIdleStrategy;
import dev.pubsubshm.ring.CommitRingWriter;
import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.IdleStrategy;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

/**
 * The JVM side of {@code make bench-ring}, of the {@code shm} and {@code pullerd} peers of
 * {@code make bench} and of the zero-copy cross-process test: reads every ARROW batch of
 * {@code DIR/data-P.ring} (one or more partitions, polled in turn by one thread) zero-copy
 * ({@link RingBatchLoader}), verifies the checksum of every payload
 * ({@link MessageBatchCheck}), releases the batch, and commits it back through
 * {@code DIR/commit.ring}. Runs until every producer closes its stream (or, with
 * {@code --max-msgs} or {@code --expect-from-stdin}, until that many messages were read),
 * then prints one JSON line: msgs, bytes, batches (all), then measured_msgs,
 * measured_bytes, elapsed_ns, alloc_bytes (this thread's heap allocation, from
 * ThreadMXBean), alloc_bytes_all_threads (every thread's, {@link JvmMeter}) over what came
 * after the warm-up batches ({@code --warmup-batches}, default 1: class loading and JIT),
 * gc_count, gc_time_ms, cpu_ns (the whole JVM), checksum_failures, p50/p99/p999 latency
 * (publish_time to read, microseconds; each row counted with its batch's first row).
 *
 * <p>Options: {@code --dir D (--partition P | --partitions P,Q,...) [--timeout-s S]
 * [--check-zero-copy] [--max-alloc-per-msg X] [--warmup-batches N] [--max-msgs N]
 * [--expect-from-stdin]}. With {@code --check-zero-copy} every buffer of every loaded
 * vector must lie inside the ring mapping (the check's own allocation is not counted);
 * with {@code --max-alloc-per-msg} the run fails if the reading thread's heap allocation
 * per message is higher. {@code --expect-from-stdin}: a line on stdin gives the number of
 * messages to read before stopping (for producers that never close, like pullerd).
 * Exit status 0 only if every check held.
 */
public final class RingBenchConsumer
{
    private RingBenchConsumer()
    {
    }

    /** Parsed command line. */
    record Options(Path dir, int[] partitions, long timeoutS, boolean checkZeroCopy, double maxAllocPerMsg, int warmupBatches,
                   long maxMsgs, boolean expectFromStdin)
    {
    }

    public static void main(final String[] args) throws Exception
    {
        Path dir = null;
        int[] partitions = {0};
        long timeoutS = 60;
        boolean checkZeroCopy = false;
        double maxAllocPerMsg = -1;
        int warmupBatches = 1;
        long maxMsgs = -1;
        boolean expectFromStdin = false;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--partition" -> partitions = new int[] {Integer.parseInt(args[++i])};
                case "--partitions" -> partitions = java.util.Arrays.stream(args[++i].split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray();
                case "--timeout-s" -> timeoutS = Long.parseLong(args[++i]);
                case "--check-zero-copy" -> checkZeroCopy = true;
                case "--max-alloc-per-msg" -> maxAllocPerMsg = Double.parseDouble(args[++i]);
                case "--warmup-batches" -> warmupBatches = Integer.parseInt(args[++i]);
                case "--max-msgs" -> maxMsgs = Long.parseLong(args[++i]);
                case "--expect-from-stdin" -> expectFromStdin = true;
                default ->
                {
                    System.err.println("RingBenchConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (dir == null || partitions.length == 0)
        {
            System.err.println("RingBenchConsumer: --dir and at least one partition are required");
            System.exit(2);
        }
        try
        {
            final String json = run(new Options(dir, partitions, timeoutS, checkZeroCopy, maxAllocPerMsg, warmupBatches, maxMsgs, expectFromStdin));
            System.out.println(json);
        }
        catch (final Exception ex)
        {
            System.err.println("RingBenchConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    /** One DATA ring being read. */
    private static final class Part implements AutoCloseable
    {
        final int partition;
        final RingFile data;
        final DataRingReader reader;
        final RingBatchLoader loader;
        final LongConsumer release;
        final long instanceId;
        final long mapStart;
        final long mapEnd;
        final ByteBuffer view;
        boolean ended;

        Part(final Path dir, final int partition, final RootAllocator allocator)
        {
            this.partition = partition;
            RingFile f = null;
            DataRingReader r = null;
            try
            {
                f = RingFile.open(dir.resolve("data-" + partition + ".ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_DATA));
                r = new DataRingReader(f);
                loader = new RingBatchLoader(f, allocator, true);
            }
            catch (final RuntimeException ex)
            {
                if (r != null)
                {
                    r.close();
                }
                if (f != null)
                {
                    f.close();
                }
                throw ex;
            }
            data = f;
            reader = r;
            release = reader::release; // one lambda object for the whole run
            instanceId = data.instanceId();
            mapStart = data.address();
            mapEnd = mapStart + data.fileLength();
            view = data.duplicateBuffer();
        }

        @Override
        public void close()
        {
            try (RingFile f = data; DataRingReader r = reader; RingBatchLoader l = loader)
            {
                // closed in reverse order
            }
        }
    }

    static String run(final Options o)
    {
        final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();
        final com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean)ManagementFactory.getOperatingSystemMXBean();
        final List<Part> parts = new ArrayList<>();
        try (RingFile commitRing = RingFile.open(o.dir().resolve("commit.ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_COMMIT));
             RootAllocator allocator = new RootAllocator();
             CommitRingWriter commits = new CommitRingWriter(commitRing);
             JvmMeter meter = new JvmMeter())
        {
            try
            {
                for (final int p : o.partitions())
                {
                    parts.add(new Part(o.dir(), p, allocator));
                }
                final long[] expected = {o.maxMsgs()};
                if (o.expectFromStdin())
                {
                    final Thread t = new Thread(() -> readExpected(expected), "expect-from-stdin");
                    t.setDaemon(true);
                    t.start();
                }
                return loop(o, parts, commits, threads, os, meter, expected);
            }
            finally
            {
                for (final Part p : parts)
                {
                    p.close();
                }
                if (allocator.getAllocatedMemory() != 0)
                {
                    System.err.println("RingBenchConsumer: Arrow allocator holds " + allocator.getAllocatedMemory() + " bytes at exit");
                }
            }
        }
    }

    private static void readExpected(final long[] expected)
    {
        try
        {
            final String line = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.US_ASCII)).readLine();
            if (line != null)
            {
                synchronized (expected)
                {
                    expected[0] = Long.parseLong(line.trim());
                }
            }
        }
        catch (final Exception ex)
        {
            System.err.println("RingBenchConsumer: bad --expect-from-stdin line: " + ex);
        }
    }

    private static String loop(final Options o, final List<Part> parts, final CommitRingWriter commits, final com.sun.management.ThreadMXBean threads,
        final com.sun.management.OperatingSystemMXBean os, final JvmMeter meter, final long[] expected)
    {
        final DataRecord record = new DataRecord();
        final IdleStrategy idle = new BackoffIdleStrategy();
        final LatencyHistogram latency = new LatencyHistogram();
        final MessageBatchCheck check = new MessageBatchCheck(latency, false);
        final MicroClock clock = new MicroClock();
        final Part[] ps = parts.toArray(new Part[0]);

        long excludedAlloc = 0, warmMsgs = 0, warmBytes = 0;
        long startNs = 0, startAlloc = 0, startCpu = 0;
        long lastWorkNs = System.nanoTime(), lastCalibrationNs = lastWorkNs;
        long limit = o.maxMsgs();
        final long[] gc0 = gcTotals();
        int ended = 0;
        int next = 0;
        while (ended < ps.length && (limit < 0 || check.msgs() < limit))
        {
            final Part p = ps[next];
            next = next + 1 == ps.length ? 0 : next + 1;
            if (p.ended)
            {
                continue;
            }
            if (!p.reader.poll(record))
            {
                if (p.reader.isEndOfStream())
                {
                    p.ended = true;
                    ended++;
                    continue;
                }
                if (next != 0)
                {
                    continue; // try the other partitions before idling
                }
                final long now = System.nanoTime();
                if (now - lastWorkNs > TimeUnit.SECONDS.toNanos(o.timeoutS()))
                {
                    throw new IllegalStateException("no batch for " + o.timeoutS() + " s (producer: " + p.reader.producerState() + ", read " + check.msgs() + ")");
                }
                if (o.expectFromStdin())
                {
                    synchronized (expected)
                    {
                        limit = expected[0];
                    }
                }
                idle.idle(0);
                continue;
            }
            idle.reset();
            lastWorkNs = System.nanoTime();
            if (record.type() != RingDescriptor.TYPE_ARROW)
            {
                p.reader.release(record.position());
                continue;
            }
            if (check.batches() == o.warmupBatches())
            {
                // Measurements start after the warm-up batches (class loading, JIT).
                startNs = System.nanoTime();
                startAlloc = threads.getCurrentThreadAllocatedBytes();
                startCpu = os.getProcessCpuTime();
                excludedAlloc = 0;
                warmMsgs = check.msgs();
                warmBytes = check.bytes();
                latency.reset();
                meter.start();
            }
            if (lastWorkNs - lastCalibrationNs > TimeUnit.SECONDS.toNanos(1))
            {
                clock.calibrate();
                lastCalibrationNs = lastWorkNs;
            }
            final long batchId = record.batchId();
            p.loader.load(record, p.release);
            final VectorSchemaRoot root = p.loader.root();
            if (o.checkZeroCopy())
            {
                final long a0 = threads.getCurrentThreadAllocatedBytes();
                for (final FieldVector v : root.getFieldVectors())
                {
                    checkInside(v, p.mapStart, p.mapEnd);
                }
                excludedAlloc += threads.getCurrentThreadAllocatedBytes() - a0;
            }
            check.check(root, p.view, p.mapStart, clock.nowMicros());
            p.loader.clear(); // the record goes back to the ring now
            commits.commit(p.partition, p.instanceId, batchId, batchId);
        }
        final long batches = check.batches();
        if (batches <= o.warmupBatches())
        {
            throw new IllegalStateException("only " + batches + " batches: nothing measured after " + o.warmupBatches() + " warm-up batches");
        }
        final long measuredMsgs = check.msgs() - warmMsgs;
        final long measuredBytes = check.bytes() - warmBytes;
        final long elapsed = System.nanoTime() - startNs;
        final long alloc = threads.getCurrentThreadAllocatedBytes() - startAlloc - excludedAlloc;
        final long cpu = os.getProcessCpuTime() - startCpu;
        final JvmMeter.Reading all = meter.read();
        final long[] gc1 = gcTotals();
        for (final Part p : ps)
        {
            p.loader.clear();
            if (p.loader.allocator().getAllocatedMemory() != 0)
            {
                throw new IllegalStateException("Arrow allocator holds " + p.loader.allocator().getAllocatedMemory() + " bytes after the last release");
            }
        }
        if (check.failures() > 0)
        {
            throw new IllegalStateException(check.failures() + " payloads failed their checksum");
        }
        final double perMsg = measuredMsgs == 0 ? 0 : (double)alloc / measuredMsgs;
        if (o.maxAllocPerMsg() >= 0 && perMsg >= o.maxAllocPerMsg())
        {
            throw new IllegalStateException("heap allocation " + perMsg + " bytes per message over " + measuredMsgs + " messages; limit " + o.maxAllocPerMsg());
        }
        return "{\"msgs\":" + check.msgs() + ",\"bytes\":" + check.bytes() + ",\"batches\":" + batches +
            ",\"measured_msgs\":" + measuredMsgs + ",\"measured_bytes\":" + measuredBytes + ",\"elapsed_ns\":" + elapsed +
            ",\"alloc_bytes\":" + alloc + ",\"alloc_bytes_all_threads\":" + all.allocBytes() +
            ",\"gc_count\":" + (gc1[0] - gc0[0]) + ",\"gc_time_ms\":" + (gc1[1] - gc0[1]) +
            ",\"cpu_ns\":" + cpu + ",\"checksum_failures\":" + check.failures() +
            ",\"p50_latency_us\":" + latency.percentile(0.50) + ",\"p99_latency_us\":" + latency.percentile(0.99) +
            ",\"p999_latency_us\":" + latency.percentile(0.999) + "}";
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
