package dev.pubsubshm.spark;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;

/**
 * Finds the ring set of a subscription on this host, asking pullerd to create it when it
 * does not exist: the check behind "no ring set / no pullerd reachable" errors.
 *
 * <ol>
 * <li>{@code <ringRoot>/<project>.<subscription>/} with {@code commit.ring} and a DATA ring:
 *     found (pullerd, or a stand-in such as ringgen, serves it).</li>
 * <li>Else, if {@code <ringRoot>/control.sock} exists: send {@code attach} (with
 *     {@code numPartitions} if given) and wait for the set to appear.</li>
 * <li>Else: fail, naming the directory, the socket and how to start pullerd.</li>
 * </ol>
 */
final class RingSetLocator
{
    private RingSetLocator()
    {
    }

    /**
     * Locates (or has pullerd create) the ring set of {@code options}.
     *
     * @param options the source options.
     * @return the ring set directory, which holds a commit ring and at least one DATA ring.
     * @throws IllegalStateException naming the directory, the socket and what to start.
     */
    static Path locate(final SourceOptions options)
    {
        final Path dir = options.ringSetDir();
        if (RingSetScanner.isRingSet(dir))
        {
            return dir;
        }
        final Path socket = Path.of(options.ringRoot(), "control.sock");
        final String sub = options.subscriptionName();
        if (!Files.exists(socket))
        {
            throw new IllegalStateException("pubsub-shm: no ring set for " + sub + " on this host: \"" + dir +
                "\" does not exist (or holds no rings) and no pullerd control socket \"" + socket + "\" exists. Start " +
                "pullerd on this host, e.g. `PUBSUB_SHM_DIR=" + options.ringRoot() + " pullerd -project " +
                options.projectId() + " -subscription " + options.subscriptionId() + "`, or set the option " +
                SourceOptions.RING_ROOT + " to the directory your pullerd writes (its -shm-dir)");
        }
        final long timeoutMs = Math.max(1, options.pullerdTimeoutMs());
        final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(timeoutMs);
        final JsonNode answer;
        try
        {
            answer = PullerdClient.attach(socket, options.projectId(), options.subscriptionId(),
                options.numPartitionsGiven() ? options.numPartitions() : 0, 0, timeoutMs);
        }
        catch (final IOException ex)
        {
            throw new IllegalStateException("pubsub-shm: no ring set for " + sub + " on this host (\"" + dir +
                "\" does not exist) and no pullerd answers on \"" + socket + "\": " + ex.getMessage() + ". Start " +
                "pullerd on this host (a stale socket is left by a pullerd that was killed), or raise " +
                SourceOptions.PULLERD_TIMEOUT_MS + "=" + options.pullerdTimeoutMs(), ex);
        }
        if (!answer.path("ok").asBoolean(false))
        {
            throw new IllegalStateException("pubsub-shm: pullerd on \"" + socket + "\" refused to attach " + sub + ": " +
                answer.path("error").asText(answer.toString()));
        }
        final String reported = answer.path("ring_set").path("dir").asText("");
        if (!reported.isEmpty() && !Path.of(reported).toAbsolutePath().normalize().equals(dir.toAbsolutePath().normalize()))
        {
            throw new IllegalStateException("pubsub-shm: pullerd on \"" + socket + "\" serves " + sub + " in \"" +
                reported + "\", not in \"" + dir + "\"");
        }
        while (!RingSetScanner.isRingSet(dir))
        {
            if (System.nanoTime() - deadline > 0)
            {
                throw new IllegalStateException("pubsub-shm: pullerd attached " + sub + " but its ring set \"" + dir +
                    "\" did not appear within " + SourceOptions.PULLERD_TIMEOUT_MS + "=" + options.pullerdTimeoutMs());
            }
            try
            {
                Thread.sleep(20);
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                throw new IllegalStateException("pubsub-shm: interrupted while waiting for the ring set \"" + dir + "\"", ex);
            }
        }
        return dir;
    }
}
