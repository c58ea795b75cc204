package dev.pubsubshm.ring;

/**
 * What a ring header says about the process on one side (FORMAT.md section 2, heartbeats).
 */
public enum PeerState
{
    /** {@code pid} is 0: nobody attached yet. */
    NOT_ATTACHED,
    /** The pid runs with the stored start time and its heartbeat is younger than the timeout. */
    ALIVE,
    /** The side set its {@code closed} flag: it finished cleanly (end of stream). */
    CLOSED,
    /** The pid is gone, runs another process (start time differs), or its heartbeat is stale. */
    DEAD
}
