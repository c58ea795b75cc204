package dev.pubsubshm.spark.sink;

import java.io.Serializable;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

import org.apache.spark.network.util.JavaUtils;

import dev.pubsubshm.spark.SourceOptions;

/**
 * The options of {@code df.writeStream.format("pubsub-shm")} (and {@code df.write}), parsed and
 * validated once, when the sink is created. Every error names the option, the value given and
 * what is allowed; option names are case-insensitive.
 *
 * <table>
 * <caption>Options</caption>
 * <tr><th>option</th><th>default</th><th>meaning</th></tr>
 * <tr><td>{@code topicId}</td><td>(required)</td><td>the topic ID, or its full name {@code projects/<p>/topics/<t>}</td></tr>
 * <tr><td>{@code projectId}</td><td>(required unless the topic is a full name)</td><td>the Pub/Sub project ID</td></tr>
 * <tr><td>{@code ringRoot}</td><td>{@code $PUBSUB_SHM_DIR}, else {@code /dev/shm/pubsub-shm-<uid>}</td><td>pullerd's root
 *     directory; its control socket is {@code <ringRoot>/control.sock}</td></tr>
 * <tr><td>{@code batchRows}</td><td>4096</td><td>rows per OUTBOUND batch at most</td></tr>
 * <tr><td>{@code batchBytes}</td><td>1m</td><td>message bytes per OUTBOUND batch at most (data, attributes, ordering keys);
 *     a larger single message goes alone in its batch</td></tr>
 * <tr><td>{@code lingerMs}</td><td>5</td><td>a batch is handed to pullerd at most this long after its first row (checked
 *     as rows arrive; the task's last batch goes at commit)</td></tr>
 * <tr><td>{@code ringCapacity}</td><td>pullerd's {@code -outbound-ring-capacity} (16m)</td><td>bytes of each writer's
 *     OUTBOUND ring, a power of two; at least twice the largest batch</td></tr>
 * <tr><td>{@code publishLingerMs}</td><td>pullerd's {@code -publish-linger} (5 ms)</td><td>pullerd sends a Publish request at
 *     most this long after its first message</td></tr>
 * <tr><td>{@code publishMaxBytes}</td><td>pullerd's {@code -publish-max-bytes} (5000000)</td><td>a Publish request is sent
 *     when it would pass this size (at most 10000000; also at most 1000 messages)</td></tr>
 * <tr><td>{@code publishTimeoutMs}</td><td>600000</td><td>how long a task's commit waits for Pub/Sub to accept its rows
 *     (pullerd's own retries end sooner, after {@code -publish-retry-timeout})</td></tr>
 * <tr><td>{@code pullerdTimeoutMs}</td><td>10000</td><td>how long to wait for pullerd to answer on its control socket</td></tr>
 * </table>
 */
public final class SinkOptions implements Serializable
{
    private static final long serialVersionUID = 1L;

    /** Option {@code projectId}. */
    public static final String PROJECT_ID = "projectId";
    /** Option {@code topicId}. */
    public static final String TOPIC_ID = "topicId";
    /** Option {@code ringRoot}. */
    public static final String RING_ROOT = "ringRoot";
    /** Option {@code batchRows}. */
    public static final String BATCH_ROWS = "batchRows";
    /** Option {@code batchBytes}. */
    public static final String BATCH_BYTES = "batchBytes";
    /** Option {@code lingerMs}. */
    public static final String LINGER_MS = "lingerMs";
    /** Option {@code ringCapacity}. */
    public static final String RING_CAPACITY = "ringCapacity";
    /** Option {@code publishLingerMs}. */
    public static final String PUBLISH_LINGER_MS = "publishLingerMs";
    /** Option {@code publishMaxBytes}. */
    public static final String PUBLISH_MAX_BYTES = "publishMaxBytes";
    /** Option {@code publishTimeoutMs}. */
    public static final String PUBLISH_TIMEOUT_MS = "publishTimeoutMs";
    /** Option {@code pullerdTimeoutMs}. */
    public static final String PULLERD_TIMEOUT_MS = "pullerdTimeoutMs";

    /** Every option, in the order error messages list them. */
    public static final List<String> KNOWN = List.of(PROJECT_ID, TOPIC_ID, RING_ROOT, BATCH_ROWS, BATCH_BYTES, LINGER_MS,
        RING_CAPACITY, PUBLISH_LINGER_MS, PUBLISH_MAX_BYTES, PUBLISH_TIMEOUT_MS, PULLERD_TIMEOUT_MS);

    /** Defaults. */
    public static final int DEFAULT_BATCH_ROWS = 4096;
    /** Default {@code batchBytes}: 1 MiB. */
    public static final long DEFAULT_BATCH_BYTES = 1L << 20;
    /** Default {@code lingerMs}. */
    public static final long DEFAULT_LINGER_MS = 5;
    /** Default {@code publishTimeoutMs}: 10 minutes. */
    public static final long DEFAULT_PUBLISH_TIMEOUT_MS = 600_000;
    /** Largest {@code batchRows}. */
    public static final int MAX_BATCH_ROWS = 1 << 20;
    /** Largest {@code batchBytes}: 256 MiB. */
    public static final long MAX_BATCH_BYTES = 256L << 20;
    /** Pub/Sub's publish request limit. */
    public static final long MAX_PUBLISH_BYTES = 10_000_000;

    private static final Pattern PROJECT = Pattern.compile("[a-z0-9][a-z0-9.:-]{0,99}");
    private static final Pattern TOPIC = Pattern.compile("[A-Za-z][A-Za-z0-9._~+%-]{2,254}");

    private final String projectId;
    private final String topicId;
    private final String ringRoot;
    private final int batchRows;
    private final long batchBytes;
    private final long lingerMs;
    private final long ringCapacity;
    private final long publishLingerMs;
    private final long publishMaxBytes;
    private final long publishTimeoutMs;
    private final long pullerdTimeoutMs;

    private SinkOptions(final String projectId, final String topicId, final String ringRoot, final int batchRows,
        final long batchBytes, final long lingerMs, final long ringCapacity, final long publishLingerMs,
        final long publishMaxBytes, final long publishTimeoutMs, final long pullerdTimeoutMs)
    {
        this.projectId = projectId;
        this.topicId = topicId;
        this.ringRoot = ringRoot;
        this.batchRows = batchRows;
        this.batchBytes = batchBytes;
        this.lingerMs = lingerMs;
        this.ringCapacity = ringCapacity;
        this.publishLingerMs = publishLingerMs;
        this.publishMaxBytes = publishMaxBytes;
        this.publishTimeoutMs = publishTimeoutMs;
        this.pullerdTimeoutMs = pullerdTimeoutMs;
    }

    /**
     * Whether the options ask for the sink: they name a {@code topicId}.
     *
     * @param options the options given (any key case).
     * @return {@code true} for a write to a topic.
     */
    public static boolean isSink(final Map<String, String> options)
    {
        for (final String k : options.keySet())
        {
            if (k.equalsIgnoreCase(TOPIC_ID))
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Parses and validates the options.
     *
     * @param options the options given to the writer (any key case).
     * @param env     the environment ({@code PUBSUB_SHM_DIR}).
     * @return the validated options.
     * @throws IllegalArgumentException naming the option, the value and the rule.
     */
    public static SinkOptions parse(final Map<String, String> options, final Map<String, String> env)
    {
        final TreeMap<String, String> byLower = new TreeMap<>();
        final List<String> unknown = new ArrayList<>();
        for (final Map.Entry<String, String> e : options.entrySet())
        {
            final String lower = e.getKey().toLowerCase(Locale.ROOT);
            if (lower.equals("path") || lower.equals("checkpointlocation"))
            {
                continue; // Spark's own options, passed to every sink
            }
            if (KNOWN.stream().noneMatch(k -> k.toLowerCase(Locale.ROOT).equals(lower)))
            {
                unknown.add(e.getKey());
            }
            byLower.put(lower, e.getValue());
        }
        if (!unknown.isEmpty())
        {
            throw new IllegalArgumentException("pubsub-shm sink: unknown option" + (unknown.size() > 1 ? "s " : " ") +
                String.join(", ", unknown.stream().map(u -> "\"" + u + "\"").toList()) + "; the sink's options are " +
                String.join(", ", KNOWN) + (unknown.stream().anyMatch(u -> u.equalsIgnoreCase("subscriptionId")) ?
                " (subscriptionId is for reading: spark.readStream.format(\"pubsub-shm\"))" : ""));
        }
        String topic = get(byLower, TOPIC_ID);
        String project = get(byLower, PROJECT_ID);
        if (topic == null || topic.isBlank())
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + TOPIC_ID + " is required: the Pub/Sub topic to " +
                "publish to, e.g. .option(\"" + TOPIC_ID + "\", \"my-topic\") with .option(\"" + PROJECT_ID +
                "\", \"my-project\"), or .option(\"" + TOPIC_ID + "\", \"projects/my-project/topics/my-topic\")");
        }
        if (topic.startsWith("projects/"))
        {
            final String[] parts = topic.split("/", -1);
            if (parts.length != 4 || !parts[2].equals("topics"))
            {
                throw new IllegalArgumentException("pubsub-shm sink: option " + TOPIC_ID + "=\"" + topic +
                    "\": want a topic ID or projects/<project>/topics/<id>");
            }
            if (project != null && !project.equals(parts[1]))
            {
                throw new IllegalArgumentException("pubsub-shm sink: option " + PROJECT_ID + "=\"" + project +
                    "\" contradicts " + TOPIC_ID + "=\"" + topic + "\" (project \"" + parts[1] + "\")");
            }
            project = parts[1];
            topic = parts[3];
        }
        if (project == null || project.isBlank())
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + PROJECT_ID + " is required with " + TOPIC_ID +
                "=\"" + topic + "\" (or give the full name projects/<project>/topics/" + topic + ")");
        }
        if (!PROJECT.matcher(project).matches())
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + PROJECT_ID + "=\"" + project +
                "\" is not a Pub/Sub project ID: want lower-case letters, digits, '-', '.' or ':' (at most 100)");
        }
        if (!TOPIC.matcher(topic).matches() || topic.startsWith("goog"))
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + TOPIC_ID + "=\"" + topic +
                "\" is not a Pub/Sub topic ID: want 3-255 characters of [A-Za-z0-9._~+%-], starting with a letter, " +
                "not with \"goog\"");
        }
        String root = get(byLower, RING_ROOT);
        if (root == null)
        {
            root = SourceOptions.defaultRingRoot(env);
        }
        else if (root.isBlank() || !Path.of(root).isAbsolute())
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + RING_ROOT + "=\"" + root +
                "\" must be an absolute directory path (pullerd's -shm-dir / $PUBSUB_SHM_DIR)");
        }
        final int batchRows = (int)parseLong(byLower, BATCH_ROWS, DEFAULT_BATCH_ROWS, 1, MAX_BATCH_ROWS);
        final long batchBytes = parseSize(byLower, BATCH_BYTES, DEFAULT_BATCH_BYTES, 1024, MAX_BATCH_BYTES);
        final long lingerMs = parseLong(byLower, LINGER_MS, DEFAULT_LINGER_MS, 0, 3_600_000);
        final long ringCapacity = parseSize(byLower, RING_CAPACITY, 0, 1 << 16, 1L << 30);
        if (ringCapacity != 0 && Long.bitCount(ringCapacity) != 1)
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + RING_CAPACITY + "=" + ringCapacity +
                " must be a power of two, e.g. 16m or 64m");
        }
        final long publishLinger = parseLong(byLower, PUBLISH_LINGER_MS, 0, 0, 60_000);
        final long publishBytes = parseSize(byLower, PUBLISH_MAX_BYTES, 0, 1, MAX_PUBLISH_BYTES);
        final long publishTimeout = parseLong(byLower, PUBLISH_TIMEOUT_MS, DEFAULT_PUBLISH_TIMEOUT_MS, 1, Long.MAX_VALUE / 2);
        final long pullerdTimeout = parseLong(byLower, PULLERD_TIMEOUT_MS, SourceOptions.DEFAULT_PULLERD_TIMEOUT_MS, 1,
            Long.MAX_VALUE / 2);
        return new SinkOptions(project, topic, root, batchRows, batchBytes, lingerMs, ringCapacity, publishLinger,
            publishBytes, publishTimeout, pullerdTimeout);
    }

    private static String get(final Map<String, String> byLower, final String key)
    {
        return byLower.get(key.toLowerCase(Locale.ROOT));
    }

    private static long parseLong(final Map<String, String> byLower, final String option, final long dflt, final long min,
        final long max)
    {
        final String value = get(byLower, option);
        if (value == null)
        {
            return dflt;
        }
        final long n;
        try
        {
            n = Long.parseLong(value.trim());
        }
        catch (final NumberFormatException ex)
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + option + "=\"" + value + "\" is not an integer", ex);
        }
        if (n < min || n > max)
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + option + "=" + n + " must be in [" + min + ", " +
                max + "]");
        }
        return n;
    }

    private static long parseSize(final Map<String, String> byLower, final String option, final long dflt, final long min,
        final long max)
    {
        final String value = get(byLower, option);
        if (value == null)
        {
            return dflt;
        }
        final long n;
        try
        {
            n = JavaUtils.byteStringAsBytes(value.trim());
        }
        catch (final NumberFormatException ex)
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + option + "=\"" + value +
                "\" is not a size: want a number of bytes, optionally with a unit (k, m, g), e.g. 1m", ex);
        }
        if (n < min || n > max)
        {
            throw new IllegalArgumentException("pubsub-shm sink: option " + option + "=\"" + value + "\" (" + n +
                " bytes) must be in [" + min + ", " + max + "] bytes");
        }
        return n;
    }

    /** @return the Pub/Sub project ID. */
    public String projectId()
    {
        return projectId;
    }

    /** @return the topic ID (not the full name). */
    public String topicId()
    {
        return topicId;
    }

    /** @return {@code projects/<project>/topics/<topic>}. */
    public String topicName()
    {
        return "projects/" + projectId + "/topics/" + topicId;
    }

    /** @return pullerd's root directory. */
    public String ringRoot()
    {
        return ringRoot;
    }

    /** @return pullerd's root control socket. */
    public Path controlSocket()
    {
        return Path.of(ringRoot, "control.sock");
    }

    /** @return rows per batch at most. */
    public int batchRows()
    {
        return batchRows;
    }

    /** @return message bytes per batch at most. */
    public long batchBytes()
    {
        return batchBytes;
    }

    /** @return the batch linger, in milliseconds (0: a batch per row is never forced; size and commit flush). */
    public long lingerMs()
    {
        return lingerMs;
    }

    /** @return the OUTBOUND ring capacity to ask for, 0 for pullerd's default. */
    public long ringCapacity()
    {
        return ringCapacity;
    }

    /** @return pullerd's Publish linger for this writer, 0 for pullerd's default. */
    public long publishLingerMs()
    {
        return publishLingerMs;
    }

    /** @return pullerd's Publish request size for this writer, 0 for pullerd's default. */
    public long publishMaxBytes()
    {
        return publishMaxBytes;
    }

    /** @return how long a commit waits for Pub/Sub, in milliseconds. */
    public long publishTimeoutMs()
    {
        return publishTimeoutMs;
    }

    /** @return how long to wait for pullerd's control socket, in milliseconds. */
    public long pullerdTimeoutMs()
    {
        return pullerdTimeoutMs;
    }

    @Override
    public String toString()
    {
        return "topic=" + topicName() + ", ringRoot=" + ringRoot + ", batchRows=" + batchRows + ", batchBytes=" + batchBytes +
            ", lingerMs=" + lingerMs;
    }
}
