package dev.pubsubshm.spark.sink;

import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * One daemon timer per JVM that stamps the heartbeats of every open writer every 500 ms
 * (FORMAT.md section 2), so that pullerd does not take a writer whose task is busy upstream
 * (or in a long GC-free computation) for dead.
 */
final class SinkHeartbeats
{
    /** Heartbeat period. */
    static final long INTERVAL_MS = 500;

    private static final Logger LOG = LoggerFactory.getLogger(SinkHeartbeats.class);
    private static final Set<TopicDataWriter> WRITERS = ConcurrentHashMap.newKeySet();
    private static ScheduledExecutorService timer;

    private SinkHeartbeats()
    {
    }

    static synchronized void register(final TopicDataWriter w)
    {
        WRITERS.add(w);
        if (timer == null)
        {
            timer = Executors.newSingleThreadScheduledExecutor(r ->
            {
                final Thread t = new Thread(r, "pubsub-shm-sink-heartbeat");
                t.setDaemon(true);
                return t;
            });
            timer.scheduleAtFixedRate(SinkHeartbeats::tick, INTERVAL_MS, INTERVAL_MS, TimeUnit.MILLISECONDS);
        }
    }

    static void unregister(final TopicDataWriter w)
    {
        WRITERS.remove(w);
    }

    /** @return writers registered now (for tests: 0 once every writer closed). */
    static int registered()
    {
        return WRITERS.size();
    }

    private static void tick()
    {
        for (final TopicDataWriter w : WRITERS)
        {
            try
            {
                w.heartbeat();
            }
            catch (final RuntimeException ex)
            {
                LOG.warn("pubsub-shm sink: heartbeat failed", ex);
            }
        }
    }
}
