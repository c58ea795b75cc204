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
 * latest report of every executor, and the executors Spark runs (host, cores), from which it
 * tells whether a host is still in the cluster and deals out the cluster's StreamingPull
 * stream budget per host. The stream writes watermarks here ({@link #committed},
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
    private final Map<String, HostReport> reports = new HashMap<>(); // key: host + '\0' + executor id
    private final Map<String, Executor> executors = new HashMap<>();  // executor id -> where, how many cores
    private boolean executorsKnown;
    private String driverHost = "";
    private volatile boolean pluginActive;

    CommitBoard()
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
        int streamBudget;
        final Map<Long, long[]> marks = new HashMap<>(); // instance -> {committed, planned}
        final Set<String> streams = new HashSet<>();
        final Set<Long> abandoned = new HashSet<>(); // incarnations of hosts that left: never committed again
        long lingerUntilNs;
    }

    private record HostReport(String host, String executorId, long atNs, Map<String, List<RingView>> sets)
    {
    }

    private record Executor(String host, int cores)
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
     * @param streamBudget StreamingPull streams across the cluster, 0 for 2 x the total
     *                     executor cores.
     */
    synchronized void register(final String streamId, final Path dir, final String project, final String subscription,
        final int partitions, final int streamBudget)
    {
        final SetState s = sets.computeIfAbsent(dir, d -> new SetState());
        s.streams.add(streamId);
        s.project = project;
        s.subscription = subscription;
        s.partitions = partitions;
        s.streamBudget = streamBudget;
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
        reports.put(report.host() + '\0' + report.executorId(),
            new HostReport(report.host(), report.executorId(), now, byDir));
        final List<PluginMessages.SetMarks> out = new ArrayList<>();
        sets.entrySet().removeIf(e -> e.getValue().streams.isEmpty() && e.getValue().lingerUntilNs != 0 &&
            now - e.getValue().lingerUntilNs > 0);
        for (final Map.Entry<Path, SetState> e : sets.entrySet())
        {
            final List<PluginMessages.RingMark> marks = new ArrayList<>();
            for (final Map.Entry<Long, long[]> m : e.getValue().marks.entrySet())
            {
                if (e.getValue().abandoned.contains(m.getKey()))
                {
                    continue;
                }
                marks.add(new PluginMessages.RingMark(m.getKey(), m.getValue()[0], m.getValue()[1]));
            }
            final SetState s = e.getValue();
            out.add(new PluginMessages.SetMarks(e.getKey().toString(), s.project, s.subscription, s.partitions,
                streamShare(report.host(), s.streamBudget), marks));
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
        final Map<Long, RingView> out = new LinkedHashMap<>(); // several executors on one host report the same rings
        final SetState state = sets.get(dir);
        final Set<Long> abandoned = state == null ? Set.of() : state.abandoned;
        for (final HostReport r : reports.values())
        {
            if (now - r.atNs() > TimeUnit.MILLISECONDS.toNanos(REPORT_MAX_AGE_MS))
            {
                continue;
            }
            final List<RingView> views = r.sets().get(dir.toString());
            if (views != null)
            {
                for (final RingView v : views)
                {
                    if (abandoned.contains(v.instanceId()))
                    {
                        continue;
                    }
                    final RingView seen = out.get(v.instanceId());
                    if (seen == null || v.lastBatchId() > seen.lastBatchId())
                    {
                        out.put(v.instanceId(), v);
                    }
                }
            }
        }
        return new ArrayList<>(out.values());
    }

    /**
     * Spark registered an executor (the driver plugin's listener).
     *
     * @param executorId the executor.
     * @param host       its host, as Spark names it.
     * @param cores      its cores.
     */
    synchronized void executorAdded(final String executorId, final String host, final int cores)
    {
        executorsKnown = true;
        executors.put(executorId, new Executor(host, Math.max(1, cores)));
    }

    /**
     * Spark removed an executor (it exited, was killed, or its host is gone): its reports are
     * dropped at once, so the stream stops planning its host's rings unless another executor
     * there reports them.
     *
     * @param executorId the executor.
     */
    synchronized void executorRemoved(final String executorId)
    {
        executorsKnown = true;
        final Executor e = executors.remove(executorId);
        reports.values().removeIf(r -> r.executorId().equals(executorId));
        if (e != null)
        {
            // A host without executors has no reader: forget its reports from any executor id.
            final boolean hostLeft = executors.values().stream().noneMatch(x -> x.host().equals(e.host()));
            if (hostLeft)
            {
                reports.values().removeIf(r -> r.host().equals(e.host()));
            }
        }
    }

    /**
     * Answers a {@link PluginMessages.SkipQuery}: if {@code host} has left the cluster, marks
     * the ring incarnation abandoned (no watermark is ever sent for it again, and it is not
     * planned again) and returns {@code true}; else returns {@code false}. The driver's own
     * host never counts as gone (its rings are committed by the driver itself).
     *
     * @param host       the host the slice was planned on.
     * @param dir        the ring set directory.
     * @param instanceId the ring incarnation.
     * @return whether the slice is to be skipped.
     */
    synchronized boolean abandonIfHostGone(final String host, final Path dir, final long instanceId)
    {
        if (host.equals(driverHost) || hostAlive(host))
        {
            return false;
        }
        sets.computeIfAbsent(dir, d -> new SetState()).abandoned.add(instanceId);
        return true;
    }

    /**
     * @param dir        the ring set directory.
     * @param instanceId a ring incarnation.
     * @return whether it was abandoned (its host left while a micro-batch needed it).
     */
    synchronized boolean abandoned(final Path dir, final long instanceId)
    {
        final SetState s = sets.get(dir);
        return s != null && s.abandoned.contains(instanceId);
    }

    /** @param host the driver's host, as Spark names it (never treated as gone). */
    synchronized void driverHost(final String host)
    {
        driverHost = host;
    }

    /**
     * Whether a host is still part of the application: one of its executors is registered
     * (when the driver plugin's listener has seen executors), else one of them reported within
     * {@link #REPORT_MAX_AGE_MS}.
     *
     * @param host a host, as Spark names it.
     * @return {@code true} if the host may still hold readable rings.
     */
    synchronized boolean hostAlive(final String host)
    {
        if (executorsKnown)
        {
            for (final Executor e : executors.values())
            {
                if (e.host().equals(host))
                {
                    return true;
                }
            }
            return false;
        }
        final long now = System.nanoTime();
        for (final HostReport r : reports.values())
        {
            if (r.host().equals(host) && now - r.atNs() <= TimeUnit.MILLISECONDS.toNanos(REPORT_MAX_AGE_MS))
            {
                return true;
            }
        }
        return false;
    }

    /**
     * The StreamingPull streams {@code host}'s pullerd may open for a set: the cluster budget
     * ({@code streamBudget}, else 2 x the total executor cores) dealt out in proportion to the
     * hosts' executor cores, rounded down, at least 1 per host. The shares add up to at most
     * the budget as long as the budget is at least the number of hosts.
     *
     * @param host         the host asking.
     * @param streamBudget the set's budget, 0 for the default.
     * @return the share, 0 if the executors are not known (pullerd then uses its own number).
     */
    synchronized int streamShare(final String host, final int streamBudget)
    {
        int total = 0;
        int here = 0;
        for (final Executor e : executors.values())
        {
            total += e.cores();
            if (e.host().equals(host))
            {
                here += e.cores();
            }
        }
        if (total == 0 || here == 0)
        {
            return 0;
        }
        final long budget = streamBudget > 0 ? streamBudget : 2L * total;
        return (int)Math.max(1, budget * here / total);
    }
}
