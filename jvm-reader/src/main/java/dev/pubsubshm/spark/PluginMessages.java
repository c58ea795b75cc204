package dev.pubsubshm.spark;

import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.ObjectInputFilter;
import java.io.ObjectInputStream;
import java.io.ObjectOutputStream;
import java.io.ObjectStreamClass;
import java.io.Serializable;
import java.io.UncheckedIOException;
import java.util.List;

/**
 * The messages between {@link PubSubShmPlugin}'s executor side and its driver side. Only
 * executors talk ({@code ask}); the driver answers. Neither carries an ack id or a message:
 * executors report what their host's rings hold (record headers' batch ids, rows, bytes),
 * the driver answers with per-ring batch ids (the commit watermark and what it has planned).
 *
 * <p>On the wire every message is a {@code byte[]} ({@link #encode}, {@link #decode}): Spark's
 * RPC layer deserializes what it carries with the executor's application class loader, which
 * does not see jars added with {@code --jars}/{@code spark.jars}; a byte array it can always
 * deserialize, and this class decodes it with the connector's own class loader, accepting
 * only the connector's message classes and the JDK types they hold.
 */
final class PluginMessages
{
    /** What {@link #decode} accepts: these messages, the JDK collections and records in them, primitive arrays. */
    private static final ObjectInputFilter FILTER = ObjectInputFilter.Config.createFilter(
        "maxdepth=16;maxrefs=1000000;java.lang.*;java.util.*;dev.pubsubshm.spark.*;!*");

    private PluginMessages()
    {
    }

    /**
     * @param message a message of this class.
     * @return its Java serialization, for {@code PluginContext.ask} and the driver's answer.
     */
    static byte[] encode(final Serializable message)
    {
        final ByteArrayOutputStream bytes = new ByteArrayOutputStream();
        try (ObjectOutputStream out = new ObjectOutputStream(bytes))
        {
            out.writeObject(message);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("pubsub-shm plugin: cannot serialize " + message.getClass().getSimpleName(), ex);
        }
        return bytes.toByteArray();
    }

    /**
     * @param wire what {@link #encode} made.
     * @return the message, resolved with the connector's class loader.
     * @throws IllegalArgumentException if the bytes are not a message of this class.
     */
    static Object decode(final byte[] wire)
    {
        try (ObjectInputStream in = new ObjectInputStream(new ByteArrayInputStream(wire))
        {
            @Override
            protected Class<?> resolveClass(final ObjectStreamClass desc) throws IOException, ClassNotFoundException
            {
                try
                {
                    return Class.forName(desc.getName(), false, PluginMessages.class.getClassLoader());
                }
                catch (final ClassNotFoundException ex)
                {
                    return super.resolveClass(desc);
                }
            }
        })
        {
            in.setObjectInputFilter(FILTER);
            return in.readObject();
        }
        catch (final IOException | ClassNotFoundException ex)
        {
            throw new IllegalArgumentException("pubsub-shm plugin: a message of " + wire.length + " bytes is not one " +
                "of the plugin's messages (driver and executors must run the same connector jar): " + ex, ex);
        }
    }

    /**
     * Executor to driver, every poll interval: what the rings of the ring sets the driver
     * asked about hold on this executor's host.
     *
     * @param host       the host, as Spark names it (tasks are placed by this name).
     * @param executorId the executor.
     * @param sets       one report per ring set present on the host.
     */
    record Report(String host, String executorId, List<SetReport> sets) implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }

    /**
     * The rings of one ring set on one host.
     *
     * @param dir   the ring set directory.
     * @param views one per DATA ring, detail trimmed to what the driver has not planned yet.
     */
    record SetReport(String dir, List<RingView> views) implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }

    /**
     * Driver to executor: the ring sets active queries read, with their watermarks.
     *
     * @param sets the active ring sets.
     */
    record Reply(List<SetMarks> sets) implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }

    /**
     * The watermarks of one ring set.
     *
     * @param dir          the ring set directory (the same path on every host).
     * @param project      the subscription's project (to ask a host's pullerd to attach it).
     * @param subscription the subscription ID.
     * @param partitions   virtual partitions to ask pullerd for, 0 for its default.
     * @param streams      StreamingPull streams the reporting host's pullerd may open for
     *                     the subscription (its share of the cluster's stream budget), 0 for
     *                     pullerd's own number (the driver does not know the executors' cores).
     * @param rings        one per ring incarnation the driver knows.
     */
    record SetMarks(String dir, String project, String subscription, int partitions, int streams, List<RingMark> rings)
        implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }

    /**
     * One ring incarnation's watermarks.
     *
     * @param instanceId the {@code ring_instance_id}.
     * @param committed  every batch up to this id is committed by Spark: commit it.
     * @param planned    the driver has planned up to this id: report detail after it.
     */
    record RingMark(long instanceId, long committed, long planned) implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }

    /**
     * Task to driver, from a task that runs on another host than the one its rings were
     * planned on: has that host left the cluster? The answer (a {@code Boolean}) tells "Spark
     * placed the task on the wrong host" ({@code false}: fail, Spark retries it, preferably
     * on the ring's host) from "the ring's host is gone" ({@code true}: skip the slice). In the
     * second case the driver first marks the ring incarnation abandoned, before the task
     * returns and so before its micro-batch can commit: no commit watermark is ever sent for
     * it again, so no batch of it is acknowledged without having been read; pullerd on that
     * host never acks them, and Pub/Sub redelivers them to the other hosts.
     *
     * @param host       the host the slice was planned on.
     * @param dir        the ring set directory.
     * @param instanceId the ring incarnation of the slice.
     */
    record SkipQuery(String host, String dir, long instanceId) implements Serializable
    {
        private static final long serialVersionUID = 1L;
    }
}
