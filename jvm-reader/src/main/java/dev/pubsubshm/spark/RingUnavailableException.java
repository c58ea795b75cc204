package dev.pubsubshm.spark;

import java.nio.file.Path;

/**
 * A ring the Spark layer needs is not there in the expected incarnation: the file is
 * missing on this host, or it was recreated with another {@code ring_instance_id}. The
 * message names the file, the instance ids and what it means for the data.
 */
public final class RingUnavailableException extends RuntimeException
{
    private static final long serialVersionUID = 1L;

    /** Why the ring is unavailable. */
    public enum Reason
    {
        /** No ring file at the path on this host (or not ready within the timeout). */
        MISSING,
        /** The file at the path is another incarnation (different {@code ring_instance_id}). */
        RECREATED
    }

    private final Reason reason;
    private final transient Path path;

    /**
     * @param reason  why.
     * @param path    the ring file.
     * @param message the whole message.
     * @param cause   the underlying exception, or {@code null}.
     */
    public RingUnavailableException(final Reason reason, final Path path, final String message, final Throwable cause)
    {
        super(message, cause);
        this.reason = reason;
        this.path = path;
    }

    /** @return why the ring is unavailable. */
    public Reason reason()
    {
        return reason;
    }

    /** @return the ring file (null after deserialization). */
    public Path path()
    {
        return path;
    }
}
