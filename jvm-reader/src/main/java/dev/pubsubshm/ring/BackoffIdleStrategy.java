package dev.pubsubshm.ring;

import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

/**
 * Spins, then yields, then parks with an exponentially growing period up to a maximum
 * (Agrona's {@code BackoffIdleStrategy}). The default suits a reader that should cost
 * nothing when idle: 100 spins, 10 yields, then parks of 1 us doubling to 1 ms.
 *
 * <p>Holds back-off state: one instance per waiting thread; not thread-safe.
 */
public final class BackoffIdleStrategy implements IdleStrategy
{
    /** Default number of spins before yielding. */
    public static final long DEFAULT_MAX_SPINS = 100;
    /** Default number of yields before parking. */
    public static final long DEFAULT_MAX_YIELDS = 10;
    /** Default first park period. */
    public static final long DEFAULT_MIN_PARK_NS = TimeUnit.MICROSECONDS.toNanos(1);
    /** Default longest park period. */
    public static final long DEFAULT_MAX_PARK_NS = TimeUnit.MILLISECONDS.toNanos(1);

    private final long maxSpins;
    private final long maxYields;
    private final long minParkNs;
    private final long maxParkNs;
    private long spins;
    private long yields;
    private long parkNs;

    /** A strategy with the default limits. */
    public BackoffIdleStrategy()
    {
        this(DEFAULT_MAX_SPINS, DEFAULT_MAX_YIELDS, DEFAULT_MIN_PARK_NS, DEFAULT_MAX_PARK_NS);
    }

    /**
     * A strategy with explicit limits.
     *
     * @param maxSpins  spins before yielding, {@code >= 0}.
     * @param maxYields yields before parking, {@code >= 0}.
     * @param minParkNs first park period, {@code >= 1}.
     * @param maxParkNs longest park period, {@code >= minParkNs}.
     */
    public BackoffIdleStrategy(final long maxSpins, final long maxYields, final long minParkNs, final long maxParkNs)
    {
        if (maxSpins < 0 || maxYields < 0 || minParkNs < 1 || maxParkNs < minParkNs)
        {
            throw new IllegalArgumentException("bad back-off: maxSpins=" + maxSpins + " maxYields=" + maxYields +
                " minParkNs=" + minParkNs + " maxParkNs=" + maxParkNs +
                ": need maxSpins >= 0, maxYields >= 0, 1 <= minParkNs <= maxParkNs");
        }
        this.maxSpins = maxSpins;
        this.maxYields = maxYields;
        this.minParkNs = minParkNs;
        this.maxParkNs = maxParkNs;
        reset();
    }

    @Override
    public void idle()
    {
        if (spins < maxSpins)
        {
            spins++;
            Thread.onSpinWait();
        }
        else if (yields < maxYields)
        {
            yields++;
            Thread.yield();
        }
        else
        {
            LockSupport.parkNanos(parkNs);
            parkNs = Math.min(parkNs << 1, maxParkNs);
        }
    }

    @Override
    public void reset()
    {
        spins = 0;
        yields = 0;
        parkNs = minParkNs;
    }

    /**
     * The period the next park will last, once spins and yields are used up.
     *
     * @return nanoseconds.
     */
    public long currentParkNs()
    {
        return parkNs;
    }

    @Override
    public String toString()
    {
        return "BackoffIdleStrategy{maxSpins=" + maxSpins + ", maxYields=" + maxYields +
            ", minParkNs=" + minParkNs + ", maxParkNs=" + maxParkNs + '}';
    }
}
