package dev.pubsubshm.bench.common;

/**
 * A fixed-size histogram of latencies in microseconds (log2 buckets with 16 linear
 * sub-buckets each: at most 1/16 relative error). Recording allocates nothing. Not
 * thread-safe: guard it, or keep one per thread and {@link #add} them.
 */
public final class LatencyHistogram
{
    private static final int SUB = 16;
    private final long[] counts = new long[64 * SUB];
    private long total;
    private long max;

    /** Records {@code count} samples of {@code micros} (negative values count as 0). */
    public void record(final long micros, final long count)
    {
        final long v = Math.max(0, micros);
        counts[index(v)] += count;
        total += count;
        if (count > 0 && v > max)
        {
            max = v;
        }
    }

    /** Adds every sample of {@code other} to this histogram. */
    public void add(final LatencyHistogram other)
    {
        for (int i = 0; i < counts.length; i++)
        {
            counts[i] += other.counts[i];
        }
        total += other.total;
        max = Math.max(max, other.max);
    }

    /** Forgets every sample. */
    public void reset()
    {
        java.util.Arrays.fill(counts, 0);
        total = 0;
        max = 0;
    }

    /** @return the number of samples recorded. */
    public long count()
    {
        return total;
    }

    /** @return the largest sample recorded (exact), 0 if empty. */
    public long max()
    {
        return max;
    }

    private static int index(final long v)
    {
        if (v < SUB)
        {
            return (int)v;
        }
        final int exp = 63 - Long.numberOfLeadingZeros(v); // >= 4
        final int sub = (int)((v >>> (exp - 4)) & (SUB - 1));
        return (exp - 3) * SUB + sub;
    }

    private static long lowerBound(final int index)
    {
        if (index < SUB)
        {
            return index;
        }
        final int exp = index / SUB + 3;
        final int sub = index % SUB;
        return (1L << exp) + ((long)sub << (exp - 4));
    }

    /** @return the lower bound of the bucket holding quantile q (0 if empty). */
    public double percentile(final double q)
    {
        if (total == 0)
        {
            return 0;
        }
        final long rank = Math.max(1, (long)Math.ceil(q * total));
        long seen = 0;
        for (int i = 0; i < counts.length; i++)
        {
            seen += counts[i];
            if (seen >= rank)
            {
                return lowerBound(i);
            }
        }
        return lowerBound(counts.length - 1);
    }
}
