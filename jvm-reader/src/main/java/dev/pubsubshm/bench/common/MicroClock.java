package dev.pubsubshm.bench.common;

import java.time.Instant;

/**
 * Wall-clock time in microseconds since the Unix epoch without allocating: the
 * synthetic source stamps publish_time with Go's {@code time.Now().UnixMicro()}, and
 * {@code System.currentTimeMillis()} is too coarse for sub-millisecond latencies. Reads
 * {@link System#nanoTime()} against a wall-clock base taken by {@link #calibrate()}
 * (one {@link Instant}); call it now and then (the bench consumers do once a second) so
 * that clock adjustments are followed. Not thread-safe.
 */
public final class MicroClock
{
    private long baseMicros;
    private long baseNanos;

    /** Creates a calibrated clock. */
    public MicroClock()
    {
        calibrate();
    }

    /** Takes a fresh wall-clock base. */
    public void calibrate()
    {
        final Instant now = Instant.now();
        baseNanos = System.nanoTime();
        baseMicros = now.getEpochSecond() * 1_000_000L + now.getNano() / 1_000;
    }

    /** @return microseconds since the Unix epoch. */
    public long nowMicros()
    {
        return baseMicros + (System.nanoTime() - baseNanos) / 1_000;
    }
}
