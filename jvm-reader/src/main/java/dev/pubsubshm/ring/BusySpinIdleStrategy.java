package dev.pubsubshm.ring;

/**
 * Spins with {@link Thread#onSpinWait()}: the lowest latency, one core burnt while waiting.
 * Stateless; one instance may be shared.
 */
public final class BusySpinIdleStrategy implements IdleStrategy
{
    /** The shared instance. */
    public static final BusySpinIdleStrategy INSTANCE = new BusySpinIdleStrategy();

    @Override
    public void idle()
    {
        Thread.onSpinWait();
    }

    @Override
    public void reset()
    {
    }

    @Override
    public String toString()
    {
        return "BusySpinIdleStrategy";
    }
}
