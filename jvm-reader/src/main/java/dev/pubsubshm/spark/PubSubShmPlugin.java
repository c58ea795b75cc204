package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.apache.spark.SparkContext;
import org.apache.spark.api.plugin.DriverPlugin;
import org.apache.spark.api.plugin.ExecutorPlugin;
import org.apache.spark.api.plugin.PluginContext;
import org.apache.spark.api.plugin.SparkPlugin;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.scheduler.SparkListenerExecutorRemoved;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Commit propagation for clusters: {@code --conf spark.plugins=dev.pubsubshm.spark.PubSubShmPlugin}.
 *
 * <p>Spark lets an executor ask its driver, not the driver push. So every executor asks,
 * every {@code spark.pubsubshm.plugin.pollIntervalMs} (default {@value #DEFAULT_POLL_MS} ms),
 * with a report of the ring sets the driver named last time as they are on its host (record
 * headers only: batch ids, rows, bytes, positions); the driver files the report (the stream
 * plans the rings of every host from them) and answers with each ring incarnation's commit
 * watermark ({@link CommitBoard}). The executor then commits, on its own host, every batch up
 * to the watermark of each ring it holds ({@link RingCommitter}: COMMIT records, RELEASED,
 * head), and, by holding the rings open, stays their heart-beating consumer while a query reads
 * them. A host whose executor runs no task of the next micro-batch still gets the watermark.
 * The RELEASED bit makes each batch's commit happen once however many JVMs apply a watermark
 * (the driver itself commits the rings on its own host directly; local mode needs no plugin).
 * An executor whose host has no ring set for an active subscription asks its host's pullerd
 * to attach it (control socket {@code <ringRoot>/control.sock}), every
 * {@value #ATTACH_RETRY_MS} ms until the set is there, with its host's share of the
 * cluster's StreamingPull stream budget ({@link CommitBoard#streamShare}); when the share
 * changes (executors come and go), it asks again and pullerd resizes its streams.
 *
 * <p>The driver side also follows Spark's executors (a listener: executor added, removed),
 * so that a task placed on another host than its rings' can ask whether that host left the
 * cluster ({@link PluginMessages.SkipQuery}).
 */
public final class PubSubShmPlugin implements SparkPlugin
{
    /** Spark conf: the executor poll interval in milliseconds. */
    public static final String POLL_INTERVAL_CONF = "spark.pubsubshm.plugin.pollIntervalMs";
    /** Default executor poll interval. */
    public static final long DEFAULT_POLL_MS = 200;
    /** Detail batches per ring an executor reports at most per poll. */
    static final int MAX_REPORTED_BATCHES = 4096;
    /** How often an executor asks its host's pullerd to attach a set that is not there. */
    static final long ATTACH_RETRY_MS = 10_000;
    /** How long an executor waits for pullerd's answer and the ring set. */
    static final long ATTACH_TIMEOUT_MS = 5_000;

    private static final Logger LOG = LoggerFactory.getLogger(PubSubShmPlugin.class);

    /** The executor side's context in this JVM, for tasks to ask the driver; null without the plugin. */
    private static volatile PluginContext executorContext;

    /**
     * This JVM's host as Spark's scheduler names it (task locality): the block manager's host,
     * which is the executor's {@code --hostname}. ({@code PluginContext.hostname()} fails on
     * executors, whose RPC environment has no address of its own.)
     */
    static String sparkHost(final PluginContext ctx)
    {
        final org.apache.spark.SparkEnv env = org.apache.spark.SparkEnv.get();
        if (env != null && env.blockManager() != null && env.blockManager().blockManagerId() != null)
        {
            return env.blockManager().blockManagerId().host();
        }
        return ctx.hostname();
    }

    /**
     * Asks the driver whether a slice planned on {@code host} is to be skipped because that
     * host left the cluster ({@link PluginMessages.SkipQuery}).
     *
     * @param host       the host the slice was planned on.
     * @param dir        the ring set directory.
     * @param instanceId the ring incarnation.
     * @return {@code TRUE}: skip it (the driver abandoned the incarnation); {@code FALSE}: the host
     *         is there, fail the task so that Spark retries it; {@code null}: no plugin in this JVM
     *         or the driver did not answer (fail the task).
     */
    static Boolean skipBecauseHostGone(final String host, final String dir, final long instanceId)
    {
        final PluginContext c = executorContext;
        if (c == null)
        {
            return null;
        }
        try
        {
            final Object answer = c.ask(PluginMessages.encode(new PluginMessages.SkipQuery(host, dir, instanceId)));
            return answer instanceof byte[] wire && PluginMessages.decode(wire) instanceof Boolean b ? b : null;
        }
        catch (final Exception ex)
        {
            LOG.warn("pubsub-shm plugin: cannot ask the driver whether host {} left the cluster: {}", host, ex.toString());
            return null;
        }
    }

    @Override
    public DriverPlugin driverPlugin()
    {
        return new Driver();
    }

    @Override
    public ExecutorPlugin executorPlugin()
    {
        return new Executor();
    }

    /** The driver side: answers executors from the {@link CommitBoard}. */
    static final class Driver implements DriverPlugin
    {
        @Override
        public Map<String, String> init(final SparkContext sc, final PluginContext ctx)
        {
            final CommitBoard board = CommitBoard.get();
            board.driverHost(sparkHost(ctx));
            sc.addSparkListener(new SparkListener()
            {
                @Override
                public void onExecutorAdded(final SparkListenerExecutorAdded added)
                {
                    board.executorAdded(added.executorId(), added.executorInfo().executorHost(),
                        added.executorInfo().totalCores());
                }

                @Override
                public void onExecutorRemoved(final SparkListenerExecutorRemoved removed)
                {
                    board.executorRemoved(removed.executorId());
                    LOG.info("pubsub-shm plugin: executor {} removed ({}): its host's reports are dropped",
                        removed.executorId(), removed.reason());
                }
            });
            board.pluginActive(true);
            return Map.of();
        }

        @Override
        public Object receive(final Object wire)
        {
            if (!(wire instanceof byte[] bytes))
            {
                throw new IllegalArgumentException("pubsub-shm plugin: unexpected message " + wire + " (driver and " +
                    "executors must run the same connector jar)");
            }
            return PluginMessages.encode(handle(PluginMessages.decode(bytes)));
        }

        private java.io.Serializable handle(final Object message)
        {
            if (message instanceof PluginMessages.Report report)
            {
                return CommitBoard.get().onReport(report);
            }
            if (message instanceof PluginMessages.SkipQuery q)
            {
                final boolean skip = CommitBoard.get().abandonIfHostGone(q.host(), Path.of(q.dir()), q.instanceId());
                if (skip)
                {
                    LOG.warn("pubsub-shm plugin: host {} left the cluster; its ring incarnation {} in {} is abandoned: " +
                        "its planned batches are skipped and never acknowledged (Pub/Sub redelivers them to the other " +
                        "hosts)", q.host(), RingRegistry.hex(q.instanceId()), q.dir());
                }
                return skip;
            }
            throw new IllegalArgumentException("pubsub-shm plugin: unexpected message " + message);
        }

        @Override
        public void shutdown()
        {
            CommitBoard.get().pluginActive(false);
        }
    }

    /** The executor side: reports its host's rings, applies commit watermarks to them. */
    static final class Executor implements ExecutorPlugin
    {
        private final Map<String, RingSetScanner> scanners = new HashMap<>();
        private final Map<String, Long> attachAttempts = new HashMap<>();
        private final Map<String, Integer> streamsAsked = new HashMap<>();
        private Map<String, Map<Long, Long>> planned = Map.of();
        private PluginContext ctx;
        private ScheduledExecutorService poller;
        private volatile boolean failedOnce;

        @Override
        public void init(final PluginContext ctx, final Map<String, String> extraConf)
        {
            this.ctx = ctx;
            executorContext = ctx;
            final long interval = ctx.conf().getLong(POLL_INTERVAL_CONF, DEFAULT_POLL_MS);
            if (interval < 1)
            {
                throw new IllegalArgumentException(POLL_INTERVAL_CONF + "=" + interval + " must be >= 1");
            }
            poller = Executors.newSingleThreadScheduledExecutor(r ->
            {
                final Thread t = new Thread(r, "pubsub-shm-plugin-poller");
                t.setDaemon(true);
                return t;
            });
            poller.scheduleWithFixedDelay(this::pollSafely, interval, interval, TimeUnit.MILLISECONDS);
        }

        /** Sets the context without starting the poller (tests drive {@link #poll()} themselves). */
        void context(final PluginContext ctx)
        {
            this.ctx = ctx;
        }

        private void pollSafely()
        {
            try
            {
                poll();
                failedOnce = false;
            }
            catch (final Exception ex)
            {
                if (!failedOnce)
                {
                    failedOnce = true;
                    LOG.warn("pubsub-shm plugin: exchanging commit watermarks with the driver failed (retrying)", ex);
                }
            }
        }

        /** One exchange: report, get watermarks, commit. Runs on the poller thread only. */
        void poll() throws Exception
        {
            final List<PluginMessages.SetReport> reports = new ArrayList<>();
            for (final Map.Entry<String, RingSetScanner> e : scanners.entrySet())
            {
                final Map<Long, Long> plannedHere = planned.getOrDefault(e.getKey(), Map.of());
                final List<RingView> views = new ArrayList<>();
                for (final RingView v : e.getValue().scan())
                {
                    views.add(v.detailAfter(plannedHere.getOrDefault(v.instanceId(), 0L), MAX_REPORTED_BATCHES));
                }
                reports.add(new PluginMessages.SetReport(e.getKey(), views));
            }
            final Object answer = ctx.ask(PluginMessages.encode(new PluginMessages.Report(sparkHost(ctx), ctx.executorID(),
                reports)));
            if (!(answer instanceof byte[] wire) || !(PluginMessages.decode(wire) instanceof PluginMessages.Reply reply))
            {
                throw new IllegalStateException("pubsub-shm plugin: the driver answered " + answer);
            }
            final Map<String, Map<Long, Long>> nextPlanned = new HashMap<>();
            final Map<String, Boolean> active = new HashMap<>();
            for (final PluginMessages.SetMarks set : reply.sets())
            {
                active.put(set.dir(), Boolean.TRUE);
                RingSetScanner scanner = scanners.get(set.dir());
                if (scanner != null && !RingSetScanner.isRingSet(Path.of(set.dir())))
                {
                    // pullerd stopped or restarted without the set: attach it again once it answers.
                    scanner.close();
                    scanners.remove(set.dir());
                    streamsAsked.remove(set.dir());
                    scanner = null;
                }
                if (scanner == null)
                {
                    if (!RingSetScanner.isRingSet(Path.of(set.dir())) && !attach(set, false))
                    {
                        continue; // no pullerd for this set on this host (yet)
                    }
                    scanner = new RingSetScanner(Path.of(set.dir()), sparkHost(ctx));
                    scanners.put(set.dir(), scanner);
                }
                if (set.streams() > 0 && !Integer.valueOf(set.streams()).equals(streamsAsked.get(set.dir())))
                {
                    attach(set, true); // this host's share of the stream budget changed: pullerd resizes
                }
                final Map<Long, Long> p = new HashMap<>();
                final Map<Long, PluginMessages.RingMark> marks = new HashMap<>();
                for (final PluginMessages.RingMark m : set.rings())
                {
                    p.put(m.instanceId(), m.planned());
                    marks.put(m.instanceId(), m);
                }
                nextPlanned.put(set.dir(), p);
                for (final RingView v : scanner.scan())
                {
                    final PluginMessages.RingMark m = marks.get(v.instanceId());
                    if (m != null && m.committed() >= v.firstBatchId() && v.firstBatchId() > 0)
                    {
                        RingCommitter.commit(Path.of(v.path()), v.instanceId(), m.committed());
                    }
                }
            }
            for (final Iterator<Map.Entry<String, RingSetScanner>> it = scanners.entrySet().iterator(); it.hasNext(); )
            {
                final Map.Entry<String, RingSetScanner> e = it.next();
                if (!active.containsKey(e.getKey()))
                {
                    e.getValue().close();
                    it.remove();
                }
            }
            planned = nextPlanned;
        }

        /**
         * Asks this host's pullerd (its root control socket, next to the set directory) to
         * attach the subscription, at most every {@link #ATTACH_RETRY_MS}.
         *
         * @return {@code true} if the ring set is there now.
         */
        private boolean attach(final PluginMessages.SetMarks set, final boolean resize)
        {
            final Path dir = Path.of(set.dir());
            final Path socket = dir.resolveSibling("control.sock");
            final long now = System.nanoTime();
            final String key = resize ? set.dir() + "\0streams" : set.dir();
            final Long last = attachAttempts.get(key);
            if (set.project().isEmpty() || !java.nio.file.Files.exists(socket) ||
                (last != null && now - last < TimeUnit.MILLISECONDS.toNanos(ATTACH_RETRY_MS)))
            {
                return false;
            }
            attachAttempts.put(key, now);
            try
            {
                // Partitions only when creating the set: pullerd refuses another count for a set it serves.
                final com.fasterxml.jackson.databind.JsonNode answer = PullerdClient.attach(socket, set.project(),
                    set.subscription(), resize ? 0 : set.partitions(), set.streams(), ATTACH_TIMEOUT_MS);
                if (answer.path("ok").asBoolean(false) && set.streams() > 0)
                {
                    streamsAsked.put(set.dir(), set.streams());
                    attachAttempts.remove(set.dir() + "\0streams");
                    if (resize)
                    {
                        LOG.info("pubsub-shm plugin: asked pullerd on {} for {} StreamingPull streams for " +
                            "projects/{}/subscriptions/{} (this host's share of the stream budget); it runs {}", socket,
                            set.streams(), set.project(), set.subscription(), answer.path("ring_set").path("streams"));
                    }
                }
                if (!answer.path("ok").asBoolean(false))
                {
                    if (resize)
                    {
                        LOG.warn("pubsub-shm plugin: pullerd on {} refused {} StreamingPull streams for " +
                            "projects/{}/subscriptions/{}: {}", socket, set.streams(), set.project(), set.subscription(),
                            answer.path("error").asText(answer.toString()));
                        return false;
                    }
                    LOG.warn("pubsub-shm plugin: pullerd on {} refused to attach projects/{}/subscriptions/{}: {}", socket,
                        set.project(), set.subscription(), answer.path("error").asText(answer.toString()));
                    return false;
                }
                if (resize)
                {
                    return true;
                }
                final long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(ATTACH_TIMEOUT_MS);
                while (!RingSetScanner.isRingSet(dir) && System.nanoTime() < deadline)
                {
                    Thread.sleep(10);
                }
                return RingSetScanner.isRingSet(dir);
            }
            catch (final java.io.IOException ex)
            {
                LOG.warn("pubsub-shm plugin: no pullerd answers on {} to attach projects/{}/subscriptions/{}: {}", socket,
                    set.project(), set.subscription(), ex.getMessage());
                return false;
            }
            catch (final InterruptedException ex)
            {
                Thread.currentThread().interrupt();
                return false;
            }
        }

        @Override
        public void shutdown()
        {
            executorContext = null;
            if (poller != null)
            {
                poller.shutdownNow();
                try
                {
                    poller.awaitTermination(10, TimeUnit.SECONDS);
                }
                catch (final InterruptedException ex)
                {
                    Thread.currentThread().interrupt();
                }
            }
            for (final RingSetScanner s : scanners.values())
            {
                s.close();
            }
            scanners.clear();
        }
    }
}
