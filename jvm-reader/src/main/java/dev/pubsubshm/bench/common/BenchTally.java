package dev.pubsubshm.bench.common;

import java.lang.management.ManagementFactory;

/**
 * The measurement window of a bench consumer and its one-line JSON result, the same
 * fields for every peer: msgs, bytes, batches (everything read), measured_msgs,
 * measured_bytes, elapsed_ns (what came after the warm-up), alloc_bytes (heap allocated by
 * the reading thread), alloc_bytes_all_threads (by every thread, {@link JvmMeter}),
 * gc_count, gc_time_ms, cpu_ns (the whole JVM), checksum_failures and
 * p50/p99/p999_latency_us (publish_time to read, microseconds, measured window only).
 *
 * <p>The window opens when {@link #unit} is called with {@code done == warmup} (after
 * that many batches, or messages: class loading and JIT are not measured) and closes at
 * {@link #finish}. Single-threaded use except where a method says otherwise.
 */
public final class BenchTally implements AutoCloseable
{
    private final com.sun.management.ThreadMXBean threads = (com.sun.management.ThreadMXBean)ManagementFactory.getThreadMXBean();
    private final JvmMeter meter = new JvmMeter();
    private final LatencyHistogram latency;
    private final long warmup;
    private boolean measuring;
    private long warmMsgs;
    private long warmBytes;
    private long threadAlloc0;
    private long threadId = -1;

    /**
     * @param latency the histogram the consumer records into; it is cleared when the window opens
     * @param warmup  units (batches or messages) before the window opens
     */
    public BenchTally(final LatencyHistogram latency, final long warmup)
    {
        this.latency = latency;
        this.warmup = warmup;
    }

    /**
     * Called before each unit is read, with the units, messages and bytes read so far.
     * Opens the window when {@code done == warmup}.
     */
    public void unit(final long done, final long msgs, final long bytes)
    {
        if (!measuring && done >= warmup)
        {
            open(msgs, bytes);
        }
    }

    private void open(final long msgs, final long bytes)
    {
        measuring = true;
        warmMsgs = msgs;
        warmBytes = bytes;
        latency.reset();
        threadId = Thread.currentThread().getId();
        threadAlloc0 = threads.getCurrentThreadAllocatedBytes();
        meter.start();
    }

    /** @return whether the window is open */
    public boolean measuring()
    {
        return measuring;
    }

    /**
     * Closes the window and returns the result line (more fields may be added to it).
     *
     * @throws IllegalStateException if the window never opened
     */
    public JsonLine finish(final long msgs, final long bytes, final long batches, final long failures)
    {
        if (!measuring)
        {
            throw new IllegalStateException("only " + batches + " batches / " + msgs + " messages: nothing measured after a warm-up of " + warmup);
        }
        final JvmMeter.Reading r = meter.read();
        final long threadAlloc = Thread.currentThread().getId() == threadId ? threads.getCurrentThreadAllocatedBytes() - threadAlloc0 : -1;
        return new JsonLine().put("msgs", msgs).put("bytes", bytes).put("batches", batches)
            .put("measured_msgs", msgs - warmMsgs).put("measured_bytes", bytes - warmBytes).put("elapsed_ns", r.elapsedNs())
            .put("alloc_bytes", threadAlloc).put("alloc_bytes_all_threads", r.allocBytes())
            .put("gc_count", r.gcCount()).put("gc_time_ms", r.gcTimeMs()).put("cpu_ns", r.cpuNs())
            .put("checksum_failures", failures)
            .put("p50_latency_us", latency.percentile(0.50)).put("p99_latency_us", latency.percentile(0.99))
            .put("p999_latency_us", latency.percentile(0.999));
    }

    @Override
    public void close()
    {
        meter.close();
    }
}
