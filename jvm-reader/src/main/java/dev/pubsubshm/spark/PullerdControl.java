package dev.pubsubshm.spark;

import java.io.IOException;
import java.nio.file.Path;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Public access to pullerd's control channel (FORMAT.md section 1.1) for the other packages
 * of the connector (the sink in {@code dev.pubsubshm.spark.sink}): one request line, one
 * answer line.
 */
public final class PullerdControl
{
    private PullerdControl()
    {
    }

    /**
     * Sends one request line and reads one answer line.
     *
     * @param socket    the control socket ({@code <ringRoot>/control.sock}).
     * @param request   one JSON object, without the newline.
     * @param timeoutMs the deadline for the whole exchange.
     * @return the parsed answer.
     * @throws IOException if the socket refuses the connection, closes early, answers
     *                     something that is not JSON, or does not answer in time.
     */
    public static JsonNode call(final Path socket, final String request, final long timeoutMs) throws IOException
    {
        return PullerdClient.call(socket, request, timeoutMs);
    }
}
