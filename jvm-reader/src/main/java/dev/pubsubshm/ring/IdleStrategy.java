package dev.pubsubshm.ring;

/**
 * How a thread waits for a ring to have work (a record to read, space to write). Modelled
 * on Agrona's {@code IdleStrategy}: call {@link #idle(int)} with the work done in the last
 * duty cycle; a positive count resets any back-off.
 *
 * <p>Implementations hold per-thread back-off state: one instance per waiting thread.
 */
public interface IdleStrategy
{
    /**
     * Idles if no work was done, and resets the back-off otherwise.
     *
     * @param workCount work done in the last duty cycle.
     */
    default void idle(final int workCount)
    {
        if (workCount > 0)
        {
            reset();
        }
        else
        {
            idle();
        }
    }

    /** Idles once, backing off further on each consecutive call. */
    void idle();

    /** Resets the back-off: the next {@link #idle()} is the cheapest one. */
    void reset();
}
