package dev.pubsubshm.spark.sink;

import java.io.IOException;

/**
 * A publish that did not succeed: Pub/Sub refused rows (the message carries pullerd's gRPC code
 * and text), pullerd stopped, or the commit timed out. It fails the Spark task.
 */
public final class PublishException extends IOException
{
    private static final long serialVersionUID = 1L;

    /**
     * @param message what failed, for whom, and how many rows were accepted.
     */
    public PublishException(final String message)
    {
        super(message);
    }
}
