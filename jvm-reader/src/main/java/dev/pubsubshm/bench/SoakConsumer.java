package dev.pubsubshm.bench;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.function.LongConsumer;

import org.apache.arrow.memory.RootAllocator;

import dev.pubsubshm.arrow.RingBatchLoader;
import dev.pubsubshm.bench.check.MessageBatchCheck;
import dev.pubsubshm.bench.common.JsonLine;
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
 * The JVM side of {@code make soak}: reads the DATA rings {@code DIR/data-P.ring} of the
 * given partitions in turn on one thread, loads every batch zero-copy, checks the checksum
 * of every payload byte and that message ids run 0, 1, 2, ... per partition (none lost,
 * none twice), releases and commits each batch, and prints one JSON line per second:
 *
 * <pre>
 * {"t_s":1,"msgs":..,"bytes":..,"batches":..,"msgs_total":..,"bytes_total":..,
 *  "p50_latency_us":..,"p99_latency_us":..,"p999_latency_us":..,"max_latency_us":..,
 *  "gc_count":..,"gc_time_ms":..,"alloc_bytes":..,"cpu_ns":..,"heap_used_bytes":..,"rss_bytes":..,
 *  "checksum_failures":..,"lost":..,"duplicates":..,"bad_ids":..}
 * </pre>
 *
 * (per-second figures, except the *_total and error counts, which are cumulative; latency
 * from publish_time to read, each row counted with its batch's oldest row). When every
 * producer has closed its stream it prints a last line with {@code "final":true}, the
 * totals, the whole run's latency percentiles and {@code "next_ids"} (per partition, the
 * count of messages read in sequence), and exits 0 if no payload failed its checksum and
 * no id was lost, repeated or malformed (1 otherwise).
 *
 * <p>Before the first second it prints {@code {"ready":true,"t_s":0}}: every ring is open
 * and the reading loop starts (the soak's producers wait for it).
 *
 * <p>Options: {@code --dir D --partitions P,Q,... [--timeout-s S] [--max-park-us N]}: the
 * reader spins, yields, then parks up to N microseconds (default 1000) when the rings are
 * empty; a shorter park lowers latency and costs CPU.
 */
public final class SoakConsumer
{
    private SoakConsumer()
    {
    }

    public static void main(final String[] args)
    {
        Path dir = null;
        int[] partitions = {0};
        long timeoutS = 30;
        long maxParkUs = TimeUnit.NANOSECONDS.toMicros(BackoffIdleStrategy.DEFAULT_MAX_PARK_NS);
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--dir" -> dir = Path.of(args[++i]);
                case "--partitions" -> partitions = java.util.Arrays.stream(args[++i].split(",")).map(String::trim).mapToInt(Integer::parseInt).toArray();
                case "--timeout-s" -> timeoutS = Long.parseLong(args[++i]);
                case "--max-park-us" -> maxParkUs = Long.parseLong(args[++i]);
                default ->
                {
                    System.err.println("SoakConsumer: unknown option " + args[i]);
                    System.exit(2);
                }
            }
        }
        if (dir == null || partitions.length == 0)
        {
            System.err.println("SoakConsumer: --dir and --partitions are required");
            System.exit(2);
        }
        try
        {
            System.exit(run(dir, partitions, timeoutS, maxParkUs) ? 0 : 1);
        }
        catch (final Exception ex)
        {
            System.err.println("SoakConsumer: " + ex);
            ex.printStackTrace();
            System.exit(1);
        }
    }

    private static final class Part
    {
        final int partition;
        final RingFile data;
        final DataRingReader reader;
        final RingBatchLoader loader;
        final LongConsumer release;
        final MessageBatchCheck check;
        final ByteBuffer view;
        final long address;
        boolean ended;

        Part(final int partition, final RingFile data, final DataRingReader reader, final RingBatchLoader loader, final MessageBatchCheck check)
        {
            this.partition = partition;
            this.data = data;
            this.reader = reader;
            this.loader = loader;
            this.release = reader::release;
            this.check = check;
            this.view = data.duplicateBuffer();
            this.address = data.address();
        }
    }

    static boolean run(final Path dir, final int[] partitions, final long timeoutS, final long maxParkUs)
    {
        final LatencyHistogram second = new LatencyHistogram();
        final LatencyHistogram total = new LatencyHistogram();
        final List<AutoCloseable> closers = new ArrayList<>();
        try (RingFile commitRing = RingFile.open(dir.resolve("commit.ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_COMMIT));
             RootAllocator allocator = new RootAllocator();
             CommitRingWriter commits = new CommitRingWriter(commitRing);
             JvmMeter meter = new JvmMeter())
        {
            final Part[] ps = new Part[partitions.length];
            try
            {
                for (int i = 0; i < partitions.length; i++)
                {
                    final RingFile f = RingFile.open(dir.resolve("data-" + partitions[i] + ".ring"), RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_DATA));
                    closers.add(0, f);
                    final DataRingReader r = new DataRingReader(f);
                    closers.add(0, r);
                    final RingBatchLoader l = new RingBatchLoader(f, allocator, true);
                    closers.add(0, l);
                    ps[i] = new Part(partitions[i], f, r, l, new MessageBatchCheck(second, true));
                }
                final IdleStrategy idle = new BackoffIdleStrategy(BackoffIdleStrategy.DEFAULT_MAX_SPINS, BackoffIdleStrategy.DEFAULT_MAX_YIELDS,
                    BackoffIdleStrategy.DEFAULT_MIN_PARK_NS, Math.max(BackoffIdleStrategy.DEFAULT_MIN_PARK_NS, TimeUnit.MICROSECONDS.toNanos(maxParkUs)));
                return loop(ps, commits, meter, second, total, timeoutS, idle);
            }
            finally
            {
                for (final AutoCloseable c : closers)
                {
                    try
                    {
                        c.close();
                    }
                    catch (final Exception ex)
                    {
                        System.err.println("SoakConsumer: close: " + ex);
                    }
                }
            }
        }
    }

    private static boolean loop(final Part[] ps, final CommitRingWriter commits, final JvmMeter meter, final LatencyHistogram second,
        final LatencyHistogram total, final long timeoutS, final IdleStrategy idle)
    {
        final DataRecord record = new DataRecord();
        final MicroClock clock = new MicroClock();
        final long startNs = System.nanoTime();
        long nextReportNs = startNs + TimeUnit.SECONDS.toNanos(1);
        long lastWorkNs = startNs;
        long seconds = 0;
        long lastMsgs = 0, lastBytes = 0, lastBatches = 0;
        JvmMeter.Reading last = meter.read();
        System.out.println(new JsonLine().put("ready", true).put("t_s", 0));
        System.out.flush();
        int ended = 0;
        int next = 0;
        while (ended < ps.length)
        {
            final long now = System.nanoTime();
            if (now >= nextReportNs)
            {
                seconds++;
                nextReportNs += TimeUnit.SECONDS.toNanos(1);
                final JvmMeter.Reading r = meter.read();
                final long msgs = sum(ps, 0), bytes = sum(ps, 1), batches = sum(ps, 2);
                final JsonLine line = new JsonLine().put("t_s", seconds)
                    .put("msgs", msgs - lastMsgs).put("bytes", bytes - lastBytes).put("batches", batches - lastBatches)
                    .put("msgs_total", msgs).put("bytes_total", bytes);
                percentiles(line, second);
                errors(gauges(line, r, last), ps);
                System.out.println(line);
                System.out.flush();
                total.add(second);
                second.reset();
                last = r;
                lastMsgs = msgs;
                lastBytes = bytes;
                lastBatches = batches;
                clock.calibrate();
            }
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
                    continue;
                }
                if (now - lastWorkNs > TimeUnit.SECONDS.toNanos(timeoutS))
                {
                    throw new IllegalStateException("no batch for " + timeoutS + " s (producer of partition " + p.partition + ": " + p.reader.producerState() + ")");
                }
                idle.idle(0);
                continue;
            }
            idle.reset();
            lastWorkNs = now;
            if (record.type() != RingDescriptor.TYPE_ARROW)
            {
                p.reader.release(record.position());
                continue;
            }
            final long batchId = record.batchId();
            p.loader.load(record, p.release);
            p.check.check(p.loader.root(), p.view, p.address, clock.nowMicros());
            p.loader.clear();
            commits.commit(p.partition, p.data.instanceId(), batchId, batchId);
        }
        total.add(second);
        final JvmMeter.Reading r = meter.read();
        final JsonLine fin = new JsonLine().put("final", true).put("t_s", (System.nanoTime() - startNs) / 1e9)
            .put("msgs_total", sum(ps, 0)).put("bytes_total", sum(ps, 1)).put("batches_total", sum(ps, 2));
        percentiles(fin, total);
        fin.put("gc_count", r.gcCount()).put("gc_time_ms", r.gcTimeMs()).put("alloc_bytes", r.allocBytes()).put("cpu_ns", r.cpuNs())
            .put("heap_used_bytes", r.heapUsedBytes()).put("rss_bytes", r.rssBytes());
        errors(fin, ps);
        final long[] ids = new long[ps.length];
        for (int i = 0; i < ps.length; i++)
        {
            ids[i] = ps[i].check.nextId();
        }
        fin.put("next_ids", ids);
        System.out.println(fin);
        System.out.flush();
        long bad = 0;
        for (final Part p : ps)
        {
            bad += p.check.failures() + p.check.lost() + p.check.duplicates() + p.check.badIds();
        }
        return bad == 0;
    }

    private static long sum(final Part[] ps, final int what)
    {
        long s = 0;
        for (final Part p : ps)
        {
            s += what == 0 ? p.check.msgs() : what == 1 ? p.check.bytes() : p.check.batches();
        }
        return s;
    }

    private static void percentiles(final JsonLine line, final LatencyHistogram h)
    {
        line.put("p50_latency_us", h.percentile(0.50)).put("p99_latency_us", h.percentile(0.99))
            .put("p999_latency_us", h.percentile(0.999)).put("max_latency_us", h.max());
    }

    private static JsonLine gauges(final JsonLine line, final JvmMeter.Reading r, final JvmMeter.Reading last)
    {
        return line.put("gc_count", r.gcCount() - last.gcCount()).put("gc_time_ms", r.gcTimeMs() - last.gcTimeMs())
            .put("alloc_bytes", r.allocBytes() - last.allocBytes()).put("cpu_ns", r.cpuNs() - last.cpuNs())
            .put("heap_used_bytes", r.heapUsedBytes()).put("rss_bytes", r.rssBytes());
    }

    private static void errors(final JsonLine line, final Part[] ps)
    {
        long failures = 0, lost = 0, dup = 0, badIds = 0;
        for (final Part p : ps)
        {
            failures += p.check.failures();
            lost += p.check.lost();
            dup += p.check.duplicates();
            badIds += p.check.badIds();
        }
        line.put("checksum_failures", failures).put("lost", lost).put("duplicates", dup).put("bad_ids", badIds);
    }
}
