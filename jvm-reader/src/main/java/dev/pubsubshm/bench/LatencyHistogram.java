package dev.pubsubshm.bench;

/**
 * A fixed-size histogram of latencies in microseconds (log2 buckets with 16 linear
 * sub-buckets each: at most 1/16 relative error). Recording allocates nothing.
 */
final class LatencyHistogram
{
    private static final int SUB = 16;
    private final long[] counts = new long[64 * SUB];
    private long total;

    void record(final long micros, final long count)
    {
        final long v = Math.max(0, micros);
        counts[index(v)] += count;
        total += count;
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
    double percentile(final double q)
    {
        if (total == 0)
        {
            return 0;
        }
        final long rank = (long)Math.ceil(q * total);
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
