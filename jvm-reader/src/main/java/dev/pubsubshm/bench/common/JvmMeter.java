package dev.pubsubshm.bench.common;

import java.io.IOException;
import java.lang.management.GarbageCollectorMXBean;
import java.lang.management.ManagementFactory;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * What a bench JVM spends, measured from {@link #start()}: heap allocated by every Java
 * thread (ThreadMXBean per-thread counters, summed; threads started later count in full,
 * and a sampler thread every {@link #SAMPLE_INTERVAL_MS} ms remembers the last figure of
 * threads that die), process CPU time (all threads: JIT, GC and the rest included),
 * collections and their time, heap in use and resident set size.
 *
 * <p>A thread that starts and dies between two samples is not counted (Java 17 has no
 * process-wide allocation counter); the thread pools of the clients measured here live
 * for the whole run. The sampler's own allocation is excluded; the allocation of the thread calling
 * {@link #read()} is not (a few hundred bytes per call). Thread-safe.
 */
public final class JvmMeter implements AutoCloseable
{
    /** How often the sampler records the allocation of live threads. */
    public static final long SAMPLE_INTERVAL_MS = 100;

    private final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();
    private final com.sun.management.OperatingSystemMXBean os = (com.sun.management.OperatingSystemMXBean)ManagementFactory.getOperatingSystemMXBean();
    private final List<GarbageCollectorMXBean> gcs = ManagementFactory.getGarbageCollectorMXBeans();
    /** thread id -> {allocated at start (0 if started later), last seen}. */
    private final Map<Long, long[]> seen = new HashMap<>();
    private final Thread sampler;
    private volatile boolean closed;
    private long startNs;
    private long startCpuNs;
    private long startGcCount;
    private long startGcTimeMs;

    /** A reading since {@link #start()}. */
    public record Reading(long elapsedNs, long cpuNs, long allocBytes, long gcCount, long gcTimeMs, long heapUsedBytes, long rssBytes)
    {
    }

    /** Creates a meter and starts it. */
    public JvmMeter()
    {
        threads.setThreadAllocatedMemoryEnabled(true);
        start();
        sampler = new Thread(this::sampleLoop, "jvm-meter");
        sampler.setDaemon(true);
        sampler.start();
    }

    /** Restarts the measurement: everything is counted from now. */
    public synchronized void start()
    {
        seen.clear();
        final long[] ids = threads.getAllThreadIds();
        final long[] bytes = threads.getThreadAllocatedBytes(ids);
        for (int i = 0; i < ids.length; i++)
        {
            if (bytes[i] >= 0)
            {
                seen.put(ids[i], new long[] {bytes[i], bytes[i]});
            }
        }
        startNs = System.nanoTime();
        startCpuNs = os.getProcessCpuTime();
        final long[] gc = gcTotals();
        startGcCount = gc[0];
        startGcTimeMs = gc[1];
    }

    /** @return what was spent since {@link #start()}. */
    public synchronized Reading read()
    {
        sample();
        long alloc = 0;
        final long self = sampler == null ? -1 : sampler.getId();
        for (final Map.Entry<Long, long[]> e : seen.entrySet())
        {
            if (e.getKey() != self)
            {
                alloc += e.getValue()[1] - e.getValue()[0];
            }
        }
        final long[] gc = gcTotals();
        return new Reading(System.nanoTime() - startNs, os.getProcessCpuTime() - startCpuNs, alloc, gc[0] - startGcCount, gc[1] - startGcTimeMs,
            ManagementFactory.getMemoryMXBean().getHeapMemoryUsage().getUsed(), rssBytes());
    }

    private synchronized void sample()
    {
        final long[] ids = threads.getAllThreadIds();
        final long[] bytes = threads.getThreadAllocatedBytes(ids);
        for (int i = 0; i < ids.length; i++)
        {
            if (bytes[i] < 0)
            {
                continue; // died meanwhile: its last sample stands
            }
            final long[] s = seen.get(ids[i]);
            if (s == null)
            {
                seen.put(ids[i], new long[] {0, bytes[i]});
            }
            else
            {
                s[1] = bytes[i];
            }
        }
    }

    private void sampleLoop()
    {
        while (!closed)
        {
            sample();
            try
            {
                Thread.sleep(SAMPLE_INTERVAL_MS);
            }
            catch (final InterruptedException ex)
            {
                return;
            }
        }
    }

    private long[] gcTotals()
    {
        long count = 0, time = 0;
        for (final GarbageCollectorMXBean gc : gcs)
        {
            count += Math.max(0, gc.getCollectionCount());
            time += Math.max(0, gc.getCollectionTime());
        }
        return new long[] {count, time};
    }

    /** @return this process's resident set size (VmRSS of /proc/self/status), -1 if unknown. */
    public static long rssBytes()
    {
        try
        {
            for (final String line : Files.readAllLines(Path.of("/proc/self/status"), StandardCharsets.US_ASCII))
            {
                if (line.startsWith("VmRSS:"))
                {
                    final String[] f = line.substring(6).trim().split("\\s+");
                    return Long.parseLong(f[0]) * 1024;
                }
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            return -1;
        }
        return -1;
    }

    @Override
    public void close()
    {
        closed = true;
        sampler.interrupt();
    }
}
