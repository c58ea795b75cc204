package dev.pubsubshm.spark;

import java.io.IOException;
import java.io.Serializable;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.regex.Pattern;

import org.apache.spark.network.util.JavaUtils;

/**
 * The options of {@code spark.readStream.format("pubsub-shm")}, parsed and validated once,
 * when the source is created ({@code load()}). Every error names the option, the value given
 * and what is allowed. Option names are case-insensitive, as everywhere in Spark.
 *
 * <table>
 * <caption>Options</caption>
 * <tr><th>option</th><th>default</th><th>meaning</th></tr>
 * <tr><td>{@code subscriptionId}</td><td>(required)</td><td>the subscription ID, or its full name
 *     {@code projects/<p>/subscriptions/<s>}</td></tr>
 * <tr><td>{@code projectId}</td><td>(required unless the subscription is a full name)</td><td>the Pub/Sub project ID</td></tr>
 * <tr><td>{@code ringRoot}</td><td>{@code $PUBSUB_SHM_DIR}, else {@code /dev/shm/pubsub-shm-<uid>}</td><td>the root
 *     directory of pullerd's ring sets; the ring set is {@code <ringRoot>/<projectId>.<subscriptionId>}</td></tr>
 * <tr><td>{@code numPartitions}</td><td>2 x total executor cores</td><td>virtual partitions: asked of pullerd when the
 *     source attaches the subscription, and the most Spark partitions a micro-batch gets; never more than 2 x total
 *     cores</td></tr>
 * <tr><td>{@code maxRecordsPerTrigger}</td><td>none</td><td>rows per micro-batch at most (whole ring batches; a
 *     micro-batch takes at least one)</td></tr>
 * <tr><td>{@code maxBytesPerTrigger}</td><td>none</td><td>Arrow bytes per micro-batch at most, e.g. {@code 64m}</td></tr>
 * <tr><td>{@code pullerdTimeoutMs}</td><td>10000</td><td>how long to wait for pullerd to answer on its control socket
 *     and to create the ring set</td></tr>
 * <tr><td>{@code failOnDataLoss}</td><td>true</td><td>fail a task whose planned batch is gone (its ring was recreated
 *     after a reader death, or released by another reader); false: skip it with a warning (pullerd nacked those
 *     messages, so Pub/Sub redelivers them)</td></tr>
 * <tr><td>{@code streamBudget}</td><td>2 x total executor cores</td><td>StreamingPull streams for the subscription
 *     across the cluster (with {@code spark.plugins=dev.pubsubshm.spark.PubSubShmPlugin}): each executor host's pullerd
 *     is asked for its share, in proportion to the host's executor cores, at least 1</td></tr>
 * <tr><td>{@code validateBatches}</td><td>true</td><td>check the offsets of every Arrow vector read from shared
 *     memory before Spark touches it (one pass over the offsets)</td></tr>
 * </table>
 */
public final class SourceOptions implements Serializable
{
    private static final long serialVersionUID = 1L;

    /** Option {@code projectId}. */
    public static final String PROJECT_ID = "projectId";
    /** Option {@code subscriptionId}. */
    public static final String SUBSCRIPTION_ID = "subscriptionId";
    /** Option {@code ringRoot}. */
    public static final String RING_ROOT = "ringRoot";
    /** Option {@code numPartitions}. */
    public static final String NUM_PARTITIONS = "numPartitions";
    /** Option {@code maxRecordsPerTrigger}. */
    public static final String MAX_RECORDS_PER_TRIGGER = "maxRecordsPerTrigger";
    /** Option {@code maxBytesPerTrigger}. */
    public static final String MAX_BYTES_PER_TRIGGER = "maxBytesPerTrigger";
    /** Option {@code pullerdTimeoutMs}. */
    public static final String PULLERD_TIMEOUT_MS = "pullerdTimeoutMs";
    /** Option {@code failOnDataLoss}. */
    public static final String FAIL_ON_DATA_LOSS = "failOnDataLoss";
    /** Option {@code streamBudget}. */
    public static final String STREAM_BUDGET = "streamBudget";
    /** Option {@code validateBatches}. */
    public static final String VALIDATE_BATCHES = "validateBatches";

    /** Every option, in the order error messages list them. */
    public static final List<String> KNOWN = List.of(PROJECT_ID, SUBSCRIPTION_ID, RING_ROOT, NUM_PARTITIONS,
        MAX_RECORDS_PER_TRIGGER, MAX_BYTES_PER_TRIGGER, PULLERD_TIMEOUT_MS, FAIL_ON_DATA_LOSS, STREAM_BUDGET, VALIDATE_BATCHES);

    /** Default {@code pullerdTimeoutMs}. */
    public static final long DEFAULT_PULLERD_TIMEOUT_MS = 10_000;

    // Pub/Sub's own naming rules (the same as pullerd's), which also make the names safe
    // as a directory name.
    private static final Pattern PROJECT = Pattern.compile("[a-z0-9][a-z0-9.:-]{0,99}");
    private static final Pattern SUBSCRIPTION = Pattern.compile("[A-Za-z][A-Za-z0-9._~+%-]{2,254}");

    private final String projectId;
    private final String subscriptionId;
    private final String ringRoot;
    private final int numPartitions;
    private final boolean numPartitionsGiven;
    private final long maxRecordsPerTrigger;
    private final long maxBytesPerTrigger;
    private final long pullerdTimeoutMs;
    private final boolean failOnDataLoss;
    private final boolean validateBatches;
    private final int streamBudget;

    private SourceOptions(
        final String projectId,
        final String subscriptionId,
        final String ringRoot,
        final int numPartitions,
        final boolean numPartitionsGiven,
        final long maxRecordsPerTrigger,
        final long maxBytesPerTrigger,
        final long pullerdTimeoutMs,
        final boolean failOnDataLoss,
        final boolean validateBatches,
        final int streamBudget)
    {
        this.projectId = projectId;
        this.subscriptionId = subscriptionId;
        this.ringRoot = ringRoot;
        this.numPartitions = numPartitions;
        this.numPartitionsGiven = numPartitionsGiven;
        this.maxRecordsPerTrigger = maxRecordsPerTrigger;
        this.maxBytesPerTrigger = maxBytesPerTrigger;
        this.pullerdTimeoutMs = pullerdTimeoutMs;
        this.failOnDataLoss = failOnDataLoss;
        this.validateBatches = validateBatches;
        this.streamBudget = streamBudget;
    }

    /**
     * Parses and validates the options.
     *
     * @param options    the options given to the reader (any key case).
     * @param totalCores the total executor cores of the application (Spark's default
     *                   parallelism): {@code numPartitions} defaults to, and may not exceed, twice it.
     * @param env        the environment ({@code PUBSUB_SHM_DIR}).
     * @return the validated options.
     * @throws IllegalArgumentException naming the option, the value and the rule.
     */
    public static SourceOptions parse(final Map<String, String> options, final int totalCores, final Map<String, String> env)
    {
        final TreeMap<String, String> byLower = new TreeMap<>();
        final List<String> unknown = new ArrayList<>();
        for (final Map.Entry<String, String> e : options.entrySet())
        {
            final String lower = e.getKey().toLowerCase(Locale.ROOT);
            if (KNOWN.stream().noneMatch(k -> k.toLowerCase(Locale.ROOT).equals(lower)))
            {
                unknown.add(e.getKey());
            }
            byLower.put(lower, e.getValue());
        }
        if (!unknown.isEmpty())
        {
            throw new IllegalArgumentException("pubsub-shm: unknown option" + (unknown.size() > 1 ? "s " : " ") +
                String.join(", ", unknown.stream().map(u -> "\"" + u + "\"").toList()) + "; the known options are " +
                String.join(", ", KNOWN));
        }

        String sub = get(byLower, SUBSCRIPTION_ID);
        String project = get(byLower, PROJECT_ID);
        if (sub == null || sub.isBlank())
        {
            throw new IllegalArgumentException("pubsub-shm: option " + SUBSCRIPTION_ID + " is required: the Pub/Sub " +
                "subscription to read, e.g. .option(\"" + SUBSCRIPTION_ID + "\", \"my-sub\") with .option(\"" + PROJECT_ID +
                "\", \"my-project\"), or .option(\"" + SUBSCRIPTION_ID + "\", \"projects/my-project/subscriptions/my-sub\")");
        }
        if (sub.startsWith("projects/"))
        {
            final String[] parts = sub.split("/", -1);
            if (parts.length != 4 || !parts[2].equals("subscriptions"))
            {
                throw new IllegalArgumentException("pubsub-shm: option " + SUBSCRIPTION_ID + "=\"" + sub +
                    "\": want a subscription ID or projects/<project>/subscriptions/<id>");
            }
            if (project != null && !project.equals(parts[1]))
            {
                throw new IllegalArgumentException("pubsub-shm: option " + PROJECT_ID + "=\"" + project + "\" contradicts " +
                    SUBSCRIPTION_ID + "=\"" + sub + "\" (project \"" + parts[1] + "\")");
            }
            project = parts[1];
            sub = parts[3];
        }
        if (project == null || project.isBlank())
        {
            throw new IllegalArgumentException("pubsub-shm: option " + PROJECT_ID + " is required with " + SUBSCRIPTION_ID +
                "=\"" + sub + "\" (or give the full name projects/<project>/subscriptions/" + sub + ")");
        }
        if (!PROJECT.matcher(project).matches())
        {
            throw new IllegalArgumentException("pubsub-shm: option " + PROJECT_ID + "=\"" + project +
                "\" is not a Pub/Sub project ID: want lower-case letters, digits, '-', '.' or ':' (at most 100, starting " +
                "with a letter or digit)");
        }
        if (!SUBSCRIPTION.matcher(sub).matches() || sub.startsWith("goog"))
        {
            throw new IllegalArgumentException("pubsub-shm: option " + SUBSCRIPTION_ID + "=\"" + sub +
                "\" is not a Pub/Sub subscription ID: want 3-255 characters of [A-Za-z0-9._~+%-], starting with a letter, " +
                "not with \"goog\"");
        }

        String root = get(byLower, RING_ROOT);
        if (root == null)
        {
            root = defaultRingRoot(env);
        }
        else if (root.isBlank() || !Path.of(root).isAbsolute())
        {
            throw new IllegalArgumentException("pubsub-shm: option " + RING_ROOT + "=\"" + root +
                "\" must be an absolute directory path (pullerd's -shm-dir / $PUBSUB_SHM_DIR)");
        }

        if (totalCores < 1)
        {
            throw new IllegalArgumentException("totalCores=" + totalCores + " must be >= 1");
        }
        final int maxPartitions = 2 * totalCores;
        final String np = get(byLower, NUM_PARTITIONS);
        int numPartitions = maxPartitions;
        if (np != null)
        {
            final long n = parseLong(NUM_PARTITIONS, np, 1, Integer.MAX_VALUE);
            if (n > maxPartitions)
            {
                throw new IllegalArgumentException("pubsub-shm: option " + NUM_PARTITIONS + "=" + n + " exceeds 2 x the " +
                    "total executor cores (2 x " + totalCores + " = " + maxPartitions + "): more partitions than that only " +
                    "adds StreamingPull connections and idle tasks; use at most " + maxPartitions);
            }
            numPartitions = (int)n;
        }

        final String mr = get(byLower, MAX_RECORDS_PER_TRIGGER);
        final long maxRecords = mr == null ? 0 : parseLong(MAX_RECORDS_PER_TRIGGER, mr, 1, Long.MAX_VALUE);
        final String mb = get(byLower, MAX_BYTES_PER_TRIGGER);
        long maxBytes = 0;
        if (mb != null)
        {
            try
            {
                maxBytes = JavaUtils.byteStringAsBytes(mb.trim());
            }
            catch (final NumberFormatException ex)
            {
                throw new IllegalArgumentException("pubsub-shm: option " + MAX_BYTES_PER_TRIGGER + "=\"" + mb +
                    "\" is not a size: want a positive number of bytes, optionally with a unit (k, m, g), e.g. 64m", ex);
            }
            if (maxBytes < 1)
            {
                throw new IllegalArgumentException("pubsub-shm: option " + MAX_BYTES_PER_TRIGGER + "=\"" + mb +
                    "\" must be at least 1 byte");
            }
        }
        final String pt = get(byLower, PULLERD_TIMEOUT_MS);
        final long timeout = pt == null ? DEFAULT_PULLERD_TIMEOUT_MS : parseLong(PULLERD_TIMEOUT_MS, pt, 0, Long.MAX_VALUE);
        final boolean failOnDataLoss = parseBoolean(FAIL_ON_DATA_LOSS, get(byLower, FAIL_ON_DATA_LOSS), true);
        final boolean validate = parseBoolean(VALIDATE_BATCHES, get(byLower, VALIDATE_BATCHES), true);
        final String sb = get(byLower, STREAM_BUDGET);
        // Pub/Sub's default quota is 10,000 active StreamingPull connections per project.
        final int streamBudget = sb == null ? 0 : (int)parseLong(STREAM_BUDGET, sb, 1, 10_000);
        return new SourceOptions(project, sub, root, numPartitions, np != null, maxRecords, maxBytes, timeout,
            failOnDataLoss, validate, streamBudget);
    }

    /**
     * The ring root pullerd uses when not told otherwise: {@code $PUBSUB_SHM_DIR}, else
     * {@code /dev/shm/pubsub-shm-<uid>} (the rule of {@code ringbuf.DefaultDir}).
     *
     * @param env the environment.
     * @return an absolute path.
     */
    public static String defaultRingRoot(final Map<String, String> env)
    {
        final String dir = env.get("PUBSUB_SHM_DIR");
        if (dir != null && !dir.isEmpty())
        {
            return dir;
        }
        return "/dev/shm/pubsub-shm-" + effectiveUid();
    }

    private static int effectiveUid()
    {
        try
        {
            for (final String line : Files.readAllLines(Path.of("/proc/self/status")))
            {
                if (line.startsWith("Uid:"))
                {
                    return Integer.parseInt(line.substring(4).trim().split("\\s+")[1]);
                }
            }
        }
        catch (final IOException | RuntimeException ex)
        {
            throw new IllegalStateException("pubsub-shm: cannot read this process's uid from /proc/self/status; " +
                "set the option " + RING_ROOT + " explicitly", ex);
        }
        throw new IllegalStateException("pubsub-shm: no Uid line in /proc/self/status; set the option " + RING_ROOT);
    }

    private static String get(final Map<String, String> byLower, final String key)
    {
        return byLower.get(key.toLowerCase(Locale.ROOT));
    }

    private static long parseLong(final String option, final String value, final long min, final long max)
    {
        final long n;
        try
        {
            n = Long.parseLong(value.trim());
        }
        catch (final NumberFormatException ex)
        {
            throw new IllegalArgumentException("pubsub-shm: option " + option + "=\"" + value + "\" is not an integer", ex);
        }
        if (n < min || n > max)
        {
            throw new IllegalArgumentException("pubsub-shm: option " + option + "=" + n + " must be in [" + min + ", " +
                max + "]");
        }
        return n;
    }

    private static boolean parseBoolean(final String option, final String value, final boolean dflt)
    {
        if (value == null)
        {
            return dflt;
        }
        return switch (value.trim().toLowerCase(Locale.ROOT))
        {
            case "true" -> true;
            case "false" -> false;
            default -> throw new IllegalArgumentException("pubsub-shm: option " + option + "=\"" + value +
                "\" must be true or false");
        };
    }

    /** @return the Pub/Sub project ID. */
    public String projectId()
    {
        return projectId;
    }

    /** @return the subscription ID (not the full name). */
    public String subscriptionId()
    {
        return subscriptionId;
    }

    /** @return {@code projects/<project>/subscriptions/<subscription>}. */
    public String subscriptionName()
    {
        return "projects/" + projectId + "/subscriptions/" + subscriptionId;
    }

    /** @return the root directory of the ring sets. */
    public String ringRoot()
    {
        return ringRoot;
    }

    /** @return the ring set directory, {@code <ringRoot>/<projectId>.<subscriptionId>}. */
    public Path ringSetDir()
    {
        return Path.of(ringRoot, projectId + "." + subscriptionId);
    }

    /** @return the most Spark partitions per micro-batch (and the partitions asked of pullerd). */
    public int numPartitions()
    {
        return numPartitions;
    }

    /** @return whether {@code numPartitions} was given (else it is the default). */
    public boolean numPartitionsGiven()
    {
        return numPartitionsGiven;
    }

    /** @return rows per micro-batch at most, 0 for no limit. */
    public long maxRecordsPerTrigger()
    {
        return maxRecordsPerTrigger;
    }

    /** @return Arrow bytes per micro-batch at most, 0 for no limit. */
    public long maxBytesPerTrigger()
    {
        return maxBytesPerTrigger;
    }

    /** @return how long to wait for pullerd and its ring set, in milliseconds. */
    public long pullerdTimeoutMs()
    {
        return pullerdTimeoutMs;
    }

    /** @return whether a planned batch that is gone fails the task. */
    public boolean failOnDataLoss()
    {
        return failOnDataLoss;
    }

    /** @return StreamingPull streams across the cluster, 0 for 2 x the total executor cores. */
    public int streamBudget()
    {
        return streamBudget;
    }

    /** @return whether loaded vectors are bounds-checked. */
    public boolean validateBatches()
    {
        return validateBatches;
    }

    @Override
    public String toString()
    {
        return "subscription=" + subscriptionName() + ", ringSet=" + ringSetDir() + ", numPartitions=" + numPartitions +
            (maxRecordsPerTrigger > 0 ? ", maxRecordsPerTrigger=" + maxRecordsPerTrigger : "") +
            (maxBytesPerTrigger > 0 ? ", maxBytesPerTrigger=" + maxBytesPerTrigger : "");
    }
}
