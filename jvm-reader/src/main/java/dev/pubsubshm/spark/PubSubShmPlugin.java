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
 * {@value #ATTACH_RETRY_MS} ms until the set is there.
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
            CommitBoard.get().pluginActive(true);
            return Map.of();
        }

        @Override
        public Object receive(final Object message)
        {
            if (message instanceof PluginMessages.Report report)
            {
                return CommitBoard.get().onReport(report);
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
        private Map<String, Map<Long, Long>> planned = Map.of();
        private PluginContext ctx;
        private ScheduledExecutorService poller;
        private volatile boolean failedOnce;

        @Override
        public void init(final PluginContext ctx, final Map<String, String> extraConf)
        {
            this.ctx = ctx;
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
            final Object answer = ctx.ask(new PluginMessages.Report(ctx.hostname(), ctx.executorID(), reports));
            if (!(answer instanceof PluginMessages.Reply reply))
            {
                throw new IllegalStateException("pubsub-shm plugin: the driver answered " + answer);
            }
            final Map<String, Map<Long, Long>> nextPlanned = new HashMap<>();
            final Map<String, Boolean> active = new HashMap<>();
            for (final PluginMessages.SetMarks set : reply.sets())
            {
                active.put(set.dir(), Boolean.TRUE);
                RingSetScanner scanner = scanners.get(set.dir());
                if (scanner == null)
                {
                    if (!RingSetScanner.isRingSet(Path.of(set.dir())) && !attach(set))
                    {
                        continue; // no pullerd for this set on this host (yet)
                    }
                    scanner = new RingSetScanner(Path.of(set.dir()), ctx.hostname());
                    scanners.put(set.dir(), scanner);
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
        private boolean attach(final PluginMessages.SetMarks set)
        {
            final Path dir = Path.of(set.dir());
            final Path socket = dir.resolveSibling("control.sock");
            final long now = System.nanoTime();
            final Long last = attachAttempts.get(set.dir());
            if (set.project().isEmpty() || !java.nio.file.Files.exists(socket) ||
                (last != null && now - last < TimeUnit.MILLISECONDS.toNanos(ATTACH_RETRY_MS)))
            {
                return false;
            }
            attachAttempts.put(set.dir(), now);
            try
            {
                final com.fasterxml.jackson.databind.JsonNode answer = PullerdClient.attach(socket, set.project(),
                    set.subscription(), set.partitions(), ATTACH_TIMEOUT_MS);
                if (!answer.path("ok").asBoolean(false))
                {
                    LOG.warn("pubsub-shm plugin: pullerd on {} refused to attach projects/{}/subscriptions/{}: {}", socket,
                        set.project(), set.subscription(), answer.path("error").asText(answer.toString()));
                    return false;
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
