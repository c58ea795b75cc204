package dev.pubsubshm.spark;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import com.codahale.metrics.MetricRegistry;
import com.fasterxml.jackson.databind.JsonNode;
import org.apache.spark.SparkConf;
import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.api.plugin.PluginContext;
import org.apache.spark.resource.ResourceInformation;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@link PubSubShmPlugin}: executors report their host's rings and apply the driver's commit
 * watermarks. First without Spark (the executor side's poll against the driver side directly),
 * then in a Spark application whose driver is told not to commit: every commit ringgen sees
 * then came through the plugin.
 */
class PubSubShmPluginTest
{
    private Path root;

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-plugin-test-");
    }

    @AfterEach
    void tearDown()
    {
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    /** An executor's plugin context whose {@code ask} goes straight to the driver side. */
    private static final class DirectContext implements PluginContext
    {
        private final PubSubShmPlugin.Driver driver = new PubSubShmPlugin.Driver();
        private final String host;

        DirectContext(final String host)
        {
            this.host = host;
        }

        @Override
        public MetricRegistry metricRegistry()
        {
            return new MetricRegistry();
        }

        @Override
        public SparkConf conf()
        {
            return new SparkConf(false);
        }

        @Override
        public String executorID()
        {
            return "7";
        }

        @Override
        public String hostname()
        {
            return host;
        }

        @Override
        public Map<String, ResourceInformation> resources()
        {
            return Map.of();
        }

        @Override
        public void send(final Object message) throws IOException
        {
            throw new IOException("the plugin only asks");
        }

        @Override
        public Object ask(final Object message)
        {
            return driver.receive(message);
        }
    }

    @Test
    void executorsReportTheirRingsAndCommitUpToTheDriversWatermark() throws Exception
    {
        final CommitBoard board = CommitBoard.get();
        try (JavaRingSet set = new JavaRingSet(root.resolve("p.s"), 2, 8192))
        {
            for (int i = 0; i < 6; i++)
            {
                set.write(0, 100);
                set.write(1, 100);
            }
            final Path dir = set.dir.toAbsolutePath().normalize();
            final long id0 = set.ring(0).instanceId();
            final long id1 = set.ring(1).instanceId();
            board.register("plugin-test", dir, "p", "s", 0, 0);
            final PubSubShmPlugin.Executor executor = new PubSubShmPlugin.Executor();
            executor.context(new DirectContext("host-x"));
            try
            {
                executor.poll(); // learns the active set
                executor.poll(); // reports it
                List<RingView> views = board.reportedViews(dir);
                assertEquals(2, views.size());
                assertEquals("host-x", views.get(0).host());
                assertEquals(6, views.get(0).lastBatchId());
                assertTrue(views.get(0).hasDetail(1));

                board.planned(dir, new RingOffset(List.of(new RingOffset.Entry("host-x", 0, id0, 4, 0),
                    new RingOffset.Entry("host-x", 1, id1, 3, 0))));
                board.committed(dir, new RingOffset(List.of(new RingOffset.Entry("host-x", 0, id0, 2, 0))));
                executor.poll();
                assertEquals(List.of(1L, 2L), set.committedBatches(0), "ring 0 committed up to the watermark");
                assertTrue(set.committedBatches(1).isEmpty(), "ring 1 has no watermark yet");
                executor.poll();
                views = board.reportedViews(dir);
                final RingView v0 = views.stream().filter(v -> v.instanceId() == id0).findFirst().orElseThrow();
                assertEquals(3, v0.firstBatchId(), "the head moved past the committed batches");
                assertEquals(5, v0.detailFirstBatchId(), "detail only after what the driver planned");
                final RingView v1 = views.stream().filter(v -> v.instanceId() == id1).findFirst().orElseThrow();
                assertEquals(4, v1.detailFirstBatchId());

                board.committed(dir, new RingOffset(List.of(new RingOffset.Entry("host-x", 0, id0, 6, 0),
                    new RingOffset.Entry("host-x", 1, id1, 6, 0))));
                board.unregister("plugin-test", dir); // the query stopped: the set lingers for the last watermark
                executor.poll();
                executor.poll();
                assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 6L), set.committedBatches(0), "each batch committed once");
                assertEquals(List.of(1L, 2L, 3L, 4L, 5L, 6L), set.committedBatches(1));
                assertEquals(set.ring(1).tailPosition(), set.ring(1).headPosition());
            }
            finally
            {
                executor.shutdown();
            }
        }
    }

    @Test
    @Timeout(30)
    void anExecutorAsksItsHostsPullerdToAttachAnActiveSubscription() throws Exception
    {
        final Path dir = root.resolve("proj.sub-b").toAbsolutePath().normalize();
        final java.util.concurrent.atomic.AtomicReference<JsonNode> request = new java.util.concurrent.atomic.AtomicReference<>();
        final JavaRingSet[] created = new JavaRingSet[1];
        final PubSubShmPlugin.Executor executor = new PubSubShmPlugin.Executor();
        executor.context(new DirectContext("host-y"));
        try (java.nio.channels.ServerSocketChannel server = java.nio.channels.ServerSocketChannel.open(
            java.net.StandardProtocolFamily.UNIX))
        {
            server.bind(java.net.UnixDomainSocketAddress.of(root.resolve("control.sock")));
            final Thread pullerd = new Thread(() ->
            {
                try (java.nio.channels.SocketChannel ch = server.accept())
                {
                    final java.io.BufferedReader in = new java.io.BufferedReader(new java.io.InputStreamReader(
                        java.nio.channels.Channels.newInputStream(ch), java.nio.charset.StandardCharsets.UTF_8));
                    request.set(new com.fasterxml.jackson.databind.ObjectMapper().readTree(in.readLine()));
                    created[0] = new JavaRingSet(dir, 2, 4096);
                    ch.write(java.nio.ByteBuffer.wrap(("{\"ok\":true,\"ring_set\":{\"dir\":\"" + dir + "\"}}\n")
                        .getBytes(java.nio.charset.StandardCharsets.UTF_8)));
                }
                catch (final IOException ex)
                {
                    throw new java.io.UncheckedIOException(ex);
                }
            }, "fake-pullerd");
            pullerd.start();
            CommitBoard.get().register("attach-test", dir, "proj", "sub-b", 2, 0);
            executor.poll(); // the set is not on this host: ask pullerd
            pullerd.join();
            assertEquals("attach", request.get().path("op").asText());
            assertEquals("proj", request.get().path("project").asText());
            assertEquals("sub-b", request.get().path("subscription").asText());
            assertEquals(2, request.get().path("partitions").asInt());
            executor.poll();
            assertEquals(2, CommitBoard.get().reportedViews(dir).size(), "the new set's rings are reported");
        }
        finally
        {
            CommitBoard.get().unregister("attach-test", dir);
            executor.shutdown();
            if (created[0] != null)
            {
                created[0].close();
            }
        }
    }

    /**
     * A task that runs on another host than its slice's: the same ring path here is another
     * ring. It skips the slice only when the driver says the planned host left the cluster,
     * after abandoning that incarnation (never committed); when the host is still there, it
     * fails so that Spark retries it, even with failOnDataLoss=false.
     */
    @Test
    @Timeout(120)
    void aTaskOnAnotherHostSkipsOnlyWhenTheDriverSaysItsHostLeft() throws Exception
    {
        final SparkSession spark = SparkSession.builder()
            .master("local[1]")
            .appName("PubSubShmPluginTest-hosts")
            .config("spark.ui.enabled", "false")
            .config("spark.plugins", PubSubShmPlugin.class.getName())
            .getOrCreate();
        final Path dir = root.resolve("p.hosts").toAbsolutePath().normalize();
        final CommitBoard board = CommitBoard.get();
        try (JavaRingSet set = new JavaRingSet(dir, 1, 1 << 16))
        {
            set.write(0, 100);
            // The ring the driver planned on the other host: same path there, another incarnation.
            final long elsewhere = set.ring(0).instanceId() ^ 0x5a5a5a5aL;
            final RingInputPartition.Slice slice = new RingInputPartition.Slice(set.path(0).toString(), 0, elsewhere, 0,
                1, -1);

            try (RingPartitionReader gone = new RingPartitionReader(new RingInputPartition("10.9.9.9", List.of(slice)),
                true, true))
            {
                assertFalse(gone.next(), "a slice of a host that left is skipped, even with failOnDataLoss=true");
            }
            assertTrue(board.abandoned(dir, elsewhere), "and the driver abandoned its incarnation first");

            board.executorAdded("host-test-77", "10.8.8.8", 1);
            final RingInputPartition.Slice other = new RingInputPartition.Slice(set.path(0).toString(), 0,
                elsewhere + 1, 0, 1, -1);
            try (RingPartitionReader there = new RingPartitionReader(new RingInputPartition("10.8.8.8", List.of(other)),
                true, false))
            {
                final IllegalStateException ex = assertThrows(IllegalStateException.class, there::next);
                assertTrue(ex.getMessage().contains("not on 10.8.8.8, which is still in the cluster"), ex.getMessage());
            }
            assertFalse(board.abandoned(dir, elsewhere + 1), "a host that is there keeps its ring");
        }
        finally
        {
            board.executorRemoved("host-test-77");
            spark.stop();
        }
    }

    @Test
    @Timeout(120)
    void inASparkApplicationTheExecutorsCommitWhenTheDriverDoesNot() throws Exception
    {
        final SparkSession spark = SparkSession.builder()
            .master("local[2]")
            .appName("PubSubShmPluginTest")
            .config("spark.ui.enabled", "false")
            .config("spark.plugins", PubSubShmPlugin.class.getName())
            .config(PubSubShmPlugin.POLL_INTERVAL_CONF, "50")
            .config(PubSubShmMicroBatchStream.DRIVER_COMMITS_CONF, "false")
            .getOrCreate();
        final AtomicLong rows = new AtomicLong();
        try (Ringgen gen = Ringgen.start(root.resolve("p.sub"), "-partitions", "2", "-count", "5000", "-size", "200",
            "-batch-rows", "500", "-exit-when-committed"))
        {
            final StreamingQuery q = spark.readStream().format("pubsub-shm")
                .option("projectId", "p").option("subscriptionId", "sub").option("ringRoot", root.toString())
                .load().select("message_id")
                .writeStream()
                .option("checkpointLocation", root.resolve("checkpoint").toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, id) -> rows.addAndGet(df.count()))
                .start();
            try
            {
                final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(90);
                while (gen.isAlive())
                {
                    if (q.exception().isDefined())
                    {
                        throw new AssertionError("query failed", q.exception().get());
                    }
                    if (System.nanoTime() > deadline)
                    {
                        fail("not every batch was committed through the plugin within 90 s; read " + rows + " rows");
                    }
                    Thread.sleep(20);
                }
                final JsonNode summary = gen.awaitSummary(1);
                for (final JsonNode p : summary.path("partitions"))
                {
                    assertEquals(5000, p.path("rows_committed").asLong(), summary.toString());
                    assertEquals(p.path("batches").asLong(), p.path("batches_committed").asLong(), summary.toString());
                }
                assertEquals(0, summary.path("duplicate_commits").asLong());
                assertEquals(10_000, rows.get());
            }
            finally
            {
                q.stop();
                assertFalse(q.exception().isDefined(), () -> "query failed: " + q.exception());
            }
        }
        finally
        {
            spark.stop();
        }
    }
}
