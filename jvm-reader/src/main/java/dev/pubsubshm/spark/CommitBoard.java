package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.TimeUnit;

/**
 * The driver's side of commit propagation for clusters: per ring set that a running query
 * reads, the commit watermark and the planned watermark of every ring incarnation, and the
 * latest report of every executor host. The stream writes watermarks here ({@link #committed},
 * {@link #planned}); {@link PubSubShmPlugin}'s driver side answers executors' reports from
 * it, and the stream reads the reports to plan rings it cannot see locally. O(rings): no
 * message or ack id ever reaches it.
 *
 * <p>A set stays on the board for {@link #LINGER_MS} after its last stream stopped, so that
 * executors still get the final commit watermark (the last micro-batch of an
 * {@code AvailableNow} query is committed just before the query stops). Thread-safe.
 */
final class CommitBoard
{
    /** How long a set whose streams stopped is still announced to executors. */
    static final long LINGER_MS = 30_000;
    /** Reports older than this are ignored (the executor is gone or stuck). */
    static final long REPORT_MAX_AGE_MS = 30_000;

    private static final CommitBoard INSTANCE = new CommitBoard();

    private final Map<Path, SetState> sets = new LinkedHashMap<>();
    private final Map<String, HostReport> reports = new HashMap<>();
    private volatile boolean pluginActive;

    private CommitBoard()
    {
    }

    /** @return the board of this (driver) JVM. */
    static CommitBoard get()
    {
        return INSTANCE;
    }

    /** @return whether the driver plugin runs in this JVM (executors report to it). */
    boolean pluginActive()
    {
        return pluginActive;
    }

    /** @param active set by the driver plugin's init and shutdown. */
    void pluginActive(final boolean active)
    {
        pluginActive = active;
    }

    private static final class SetState
    {
        String project = "";
        String subscription = "";
        int partitions;
        final Map<Long, long[]> marks = new HashMap<>(); // instance -> {committed, planned}
        final Set<String> streams = new HashSet<>();
        long lingerUntilNs;
    }

    private record HostReport(long atNs, Map<String, List<RingView>> sets)
    {
    }

    /**
     * A stream starts reading a ring set.
     *
     * @param streamId     the stream.
     * @param dir          the ring set directory.
     * @param project      the subscription's project.
     * @param subscription the subscription ID.
     * @param partitions   virtual partitions to ask pullerd for when it attaches the
     *                     subscription on a host, 0 for pullerd's default.
     */
    synchronized void register(final String streamId, final Path dir, final String project, final String subscription,
        final int partitions)
    {
        final SetState s = sets.computeIfAbsent(dir, d -> new SetState());
        s.streams.add(streamId);
        s.project = project;
        s.subscription = subscription;
        s.partitions = partitions;
        s.lingerUntilNs = 0;
    }

    /**
     * A stream stops; its set lingers for {@link #LINGER_MS} if no other stream reads it.
     *
     * @param streamId the stream.
     * @param dir      the ring set directory.
     */
    synchronized void unregister(final String streamId, final Path dir)
    {
        final SetState s = sets.get(dir);
        if (s != null && s.streams.remove(streamId) && s.streams.isEmpty())
        {
            s.lingerUntilNs = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(LINGER_MS);
        }
    }

    /**
     * Raises the commit watermarks of a set to the batches of {@code offset}.
     *
     * @param dir    the ring set directory.
     * @param offset batches Spark has committed.
     */
    synchronized void committed(final Path dir, final RingOffset offset)
    {
        final SetState s = sets.computeIfAbsent(dir, d -> new SetState());
        for (final RingOffset.Entry e : offset.entries())
        {
            final long[] m = s.marks.computeIfAbsent(e.instanceId(), i -> new long[2]);
            m[0] = Math.max(m[0], e.batch());
            m[1] = Math.max(m[1], e.batch());
        }
    }

    /**
     * Raises the planned watermarks of a set.
     *
     * @param dir    the ring set directory.
     * @param offset batches Spark has planned.
     */
    synchronized void planned(final Path dir, final RingOffset offset)
    {
        final SetState s = sets.computeIfAbsent(dir, d -> new SetState());
        for (final RingOffset.Entry e : offset.entries())
        {
            final long[] m = s.marks.computeIfAbsent(e.instanceId(), i -> new long[2]);
            m[1] = Math.max(m[1], e.batch());
        }
    }

    /**
     * The commit watermark of one ring incarnation (tests, diagnostics).
     *
     * @param dir        the ring set directory.
     * @param instanceId the incarnation.
     * @return the highest committed batch id, 0 if none.
     */
    synchronized long committedOf(final Path dir, final long instanceId)
    {
        final SetState s = sets.get(dir);
        final long[] m = s == null ? null : s.marks.get(instanceId);
        return m == null ? 0 : m[0];
    }

    /**
     * Files an executor's report and answers with the watermarks of the active sets.
     *
     * @param report the executor's report.
     * @return the reply.
     */
    synchronized PluginMessages.Reply onReport(final PluginMessages.Report report)
    {
        final long now = System.nanoTime();
        final Map<String, List<RingView>> byDir = new HashMap<>();
        for (final PluginMessages.SetReport s : report.sets())
        {
            byDir.put(s.dir(), s.views());
        }
        reports.put(report.host(), new HostReport(now, byDir));
        final List<PluginMessages.SetMarks> out = new ArrayList<>();
        sets.entrySet().removeIf(e -> e.getValue().streams.isEmpty() && e.getValue().lingerUntilNs != 0 &&
            now - e.getValue().lingerUntilNs > 0);
        for (final Map.Entry<Path, SetState> e : sets.entrySet())
        {
            final List<PluginMessages.RingMark> marks = new ArrayList<>();
            for (final Map.Entry<Long, long[]> m : e.getValue().marks.entrySet())
            {
                marks.add(new PluginMessages.RingMark(m.getKey(), m.getValue()[0], m.getValue()[1]));
            }
            final SetState s = e.getValue();
            out.add(new PluginMessages.SetMarks(e.getKey().toString(), s.project, s.subscription, s.partitions, marks));
        }
        return new PluginMessages.Reply(out);
    }

    /**
     * The ring views executors reported for a set, fresh ones only.
     *
     * @param dir the ring set directory.
     * @return views from every reporting host.
     */
    synchronized List<RingView> reportedViews(final Path dir)
    {
        final long now = System.nanoTime();
        final List<RingView> out = new ArrayList<>();
        for (final HostReport r : reports.values())
        {
            if (now - r.atNs() > TimeUnit.MILLISECONDS.toNanos(REPORT_MAX_AGE_MS))
            {
                continue;
            }
            final List<RingView> views = r.sets().get(dir.toString());
            if (views != null)
            {
                out.addAll(views);
            }
        }
        return out;
    }
}
