package dev.pubsubshm.ring;

/**
 * Yields the processor with {@link Thread#yield()}: low latency while other threads can still
 * run. Stateless; one instance may be shared.
 */
public final class YieldingIdleStrategy implements IdleStrategy
{
    /** The shared instance. */
    public static final YieldingIdleStrategy INSTANCE = new YieldingIdleStrategy();

    @Override
    public void idle()
    {
        Thread.yield();
    }

    @Override
    public void reset()
    {
    }

    @Override
    public String toString()
    {
        return "YieldingIdleStrategy";
    }
}
