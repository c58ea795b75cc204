package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.spark.TaskContext;
import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerTaskEnd;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.streaming.SourceProgress;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.StreamingQueryException;
import org.apache.spark.sql.streaming.StreamingQueryProgress;
import org.apache.spark.sql.streaming.Trigger;
import org.apache.spark.sql.types.DataTypes;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.Timeout;

import static org.apache.spark.sql.functions.callUDF;
import static org.apache.spark.sql.functions.col;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * {@code format("pubsub-shm")} in a real Spark (local mode, two cores, a task may fail once),
 * reading ring sets that ringgen (bench/cmd/ringgen, a synthetic pullerd) fills and whose
 * commit ring it checks: every batch committed exactly once, nothing unknown.
 */
class PubSubShmSourceTest
{
    private static final String PROJECT = "test-project";
    private static SparkSession spark;

    private Path root;
    private Path set;
    private Path checkpoint;
    private final List<StreamingQuery> queries = new ArrayList<>();

    @BeforeAll
    static void startSpark()
    {
        Ringgen.binary(); // build it before the clock of the first test starts
        spark = SparkSession.builder()
            .master("local[2,2]") // two cores; a task may fail once and is retried
            .appName("PubSubShmSourceTest")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.streaming.pollingDelay", "5ms")
            .getOrCreate();
        spark.udf().register("checksumOk", (UDF1<byte[], Boolean>)RingChecks::checksumOk, DataTypes.BooleanType);
    }

    @AfterAll
    static void stopSpark()
    {
        if (spark != null)
        {
            spark.stop();
        }
        RingRegistry.get().detachIdle();
    }

    @BeforeEach
    void newRoot()
    {
        root = Ringgen.newRoot("pubsub-shm-spark-test-");
        set = root.resolve(PROJECT + ".sub");
        checkpoint = root.resolve("checkpoint");
    }

    @AfterEach
    void cleanUp() throws Exception
    {
        for (final StreamingQuery q : queries)
        {
            q.stop();
        }
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    private Dataset<Row> source(final String... options)
    {
        var reader = spark.readStream().format("pubsub-shm")
            .option("projectId", PROJECT).option("subscriptionId", "sub").option("ringRoot", root.toString());
        for (int i = 0; i < options.length; i += 2)
        {
            reader = reader.option(options[i], options[i + 1]);
        }
        return reader.load();
    }

    private StreamingQuery track(final StreamingQuery q)
    {
        queries.add(q);
        return q;
    }

    private static void awaitRows(final Path set, final int partitions, final long rows) throws InterruptedException
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
        while (RingChecks.rowsInRings(set, partitions) < rows)
        {
            if (System.nanoTime() > deadline)
            {
                fail("ringgen did not write " + rows + " rows within 60 s");
            }
            Thread.sleep(20);
        }
    }

    /** Every id 0..perPartition-1 exactly once per partition (bench/synth numbers each partition's messages). */
    private static void assertExactlyOnce(final Iterable<String> ids, final int partitions, final int perPartition)
    {
        final Map<String, Integer> counts = new HashMap<>();
        long n = 0;
        for (final String id : ids)
        {
            counts.merge(id, 1, Integer::sum);
            n++;
        }
        assertEquals((long)partitions * perPartition, n, "messages received");
        for (int i = 0; i < perPartition; i++)
        {
            final Integer c = counts.get(Integer.toString(i));
            if (c == null || c != partitions)
            {
                fail("message id " + i + " arrived " + c + " times, want " + partitions + " (once per partition)");
            }
        }
        assertEquals(perPartition, counts.size(), "distinct message ids");
    }

    /** Waits for ringgen to see every batch committed, failing early if the query fails. */
    private static JsonNode awaitSummary(final Ringgen gen, final StreamingQuery q, final long timeoutS) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(timeoutS);
        while (gen.isAlive() && System.nanoTime() < deadline)
        {
            if (q.exception().isDefined())
            {
                throw new AssertionError("the query failed", q.exception().get());
            }
            Thread.sleep(20);
        }
        final JsonNode summary = gen.awaitSummary(1);
        q.stop();
        assertTrue(q.exception().isEmpty(), () -> "query failed: " + q.exception());
        return summary;
    }

    private static void assertAllCommitted(final JsonNode summary, final int partitions, final int perPartition)
    {
        assertEquals(partitions, summary.path("partitions").size(), summary.toString());
        for (final JsonNode p : summary.path("partitions"))
        {
            assertEquals(perPartition, p.path("messages").asLong(), "messages written: " + p);
            assertTrue(p.path("batches").asLong() > 0, p.toString());
            assertEquals(p.path("batches").asLong(), p.path("batches_committed").asLong(), "batches committed: " + p);
            assertEquals(perPartition, p.path("rows_committed").asLong(), "rows committed: " + p);
        }
        assertEquals(0, summary.path("duplicate_commits").asLong(), summary.toString());
        assertEquals(0, summary.path("unknown_commits").asLong(), summary.toString());
        assertEquals(0, summary.path("stale_commits").asLong(), summary.toString());
    }

    @Test
    @Timeout(120)
    void hundredThousandMessagesArriveOnceAndAreCommittedOnlyAfterTheirMicroBatch() throws Exception
    {
        final int partitions = 4;
        final int perPartition = 25_000;
        final ConcurrentLinkedQueue<String> ids = new ConcurrentLinkedQueue<>();
        final AtomicLong badChecksums = new AtomicLong();
        final AtomicInteger microBatches = new AtomicInteger();
        final CopyOnWriteArrayList<Throwable> sinkErrors = new CopyOnWriteArrayList<>();
        final Path set = this.set;
        final Path checkpoint = this.checkpoint;
        final TaskMetricsListener listener = new TaskMetricsListener();
        spark.sparkContext().addSparkListener(listener);
        // 8 MiB rings for 25 MiB per partition: the producer wraps and waits, so the query
        // only completes if commits release space.
        try (Ringgen gen = Ringgen.start(set, "-partitions", "4", "-count", Integer.toString(perPartition), "-size", "1024",
            "-capacity", Integer.toString(8 << 20), "-batch-rows", "1000", "-batch-bytes", Integer.toString(1 << 20),
            "-exit-when-committed"))
        {
            final StreamingQuery q = track(source().select(col("message_id"), callUDF("checksumOk", col("data")).as("ok"))
                .writeStream()
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) ->
                {
                    try
                    {
                        // Nothing of this micro-batch may be committed back while it runs.
                        RingChecks.assertNotReleased(set, RingChecks.loggedStart(checkpoint, batchId),
                            RingChecks.loggedEnd(checkpoint, batchId));
                    }
                    catch (final Throwable t)
                    {
                        sinkErrors.add(t);
                    }
                    for (final Row r : df.collectAsList())
                    {
                        ids.add(r.getString(0));
                        if (!r.getBoolean(1))
                        {
                            badChecksums.incrementAndGet();
                        }
                    }
                    microBatches.incrementAndGet();
                })
                .start());
            final JsonNode summary = awaitSummary(gen, q, 100);
            assertTrue(sinkErrors.isEmpty(), () -> "sink checks failed: " + sinkErrors);
            assertEquals(0, badChecksums.get(), "payloads with a bad checksum");
            assertExactlyOnce(ids, partitions, perPartition);
            assertAllCommitted(summary, partitions, perPartition);
            assertTrue(microBatches.get() > 1, "micro-batches: " + microBatches.get());
        }
        finally
        {
            spark.sparkContext().removeSparkListener(listener);
        }
        assertEquals((long)partitions * perPartition, listener.records.get(), "recordsRead task metric");
        assertTrue(listener.bytes.get() > (long)partitions * perPartition * 1024, "bytesRead task metric: " + listener.bytes);
    }

    /** State of the UDF that fails one task attempt mid-batch (tasks run in this JVM). */
    static final AtomicBoolean FAILED_ONCE = new AtomicBoolean();
    static final AtomicInteger ROWS_SEEN = new AtomicInteger();
    static final ConcurrentLinkedQueue<String> SEEN_BY_FAILED_ATTEMPT = new ConcurrentLinkedQueue<>();

    private static String failOnceMidBatch(final String id)
    {
        final TaskContext tc = TaskContext.get();
        if (!FAILED_ONCE.get() && tc.attemptNumber() == 0)
        {
            SEEN_BY_FAILED_ATTEMPT.add(id);
            if (ROWS_SEEN.incrementAndGet() == 700 && FAILED_ONCE.compareAndSet(false, true))
            {
                throw new IllegalStateException("injected failure in the middle of a ring batch (partition " +
                    tc.partitionId() + ", attempt " + tc.attemptNumber() + ")");
            }
        }
        return id;
    }

    @Test
    @Timeout(90)
    void aTaskThatFailsOnceMidBatchIsRetriedOnTheSameBatches() throws Exception
    {
        FAILED_ONCE.set(false);
        ROWS_SEEN.set(0);
        SEEN_BY_FAILED_ATTEMPT.clear();
        spark.udf().register("failOnceMidBatch", (UDF1<String, String>)PubSubShmSourceTest::failOnceMidBatch,
            DataTypes.StringType);
        final ConcurrentLinkedQueue<String> ids = new ConcurrentLinkedQueue<>();
        try (Ringgen gen = Ringgen.start(set, "-partitions", "2", "-count", "6000", "-size", "64", "-batch-rows", "500",
            "-exit-when-committed"))
        {
            awaitRows(set, 2, 12_000); // all in the rings: the first micro-batch takes everything
            final StreamingQuery q = track(source().select(callUDF("failOnceMidBatch", col("message_id")))
                .writeStream()
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) ->
                {
                    for (final Row r : df.collectAsList())
                    {
                        ids.add(r.getString(0));
                    }
                })
                .start());
            final JsonNode summary = awaitSummary(gen, q, 60);
            assertTrue(FAILED_ONCE.get(), "the injected failure happened");
            assertExactlyOnce(ids, 2, 6000);
            // The retry read what the failed attempt had read (the same ring batches): every
            // row the failed attempt saw before failing is in the output.
            final Map<String, Integer> out = new HashMap<>();
            ids.forEach(id -> out.merge(id, 1, Integer::sum));
            assertEquals(700, SEEN_BY_FAILED_ATTEMPT.size());
            for (final String id : SEEN_BY_FAILED_ATTEMPT)
            {
                assertTrue(out.containsKey(id), "id " + id + " read by the failed attempt is missing after the retry");
            }
            assertAllCommitted(summary, 2, 6000);
        }
    }

    @Test
    @Timeout(90)
    void aQueryStoppedBeforeCommitReplaysTheSameMicroBatchFromItsCheckpoint() throws Exception
    {
        final ConcurrentLinkedQueue<String> firstAttempt = new ConcurrentLinkedQueue<>();
        final Map<Long, List<String>> byBatch = new ConcurrentHashMap<>();
        final Path set = this.set;
        final Path checkpoint = this.checkpoint;
        try (Ringgen gen = Ringgen.start(set, "-partitions", "2", "-count", "5000", "-size", "100", "-batch-rows", "250",
            "-exit-when-committed"))
        {
            awaitRows(set, 2, 10_000);
            // First run: micro-batch 0 reaches the sink, which fails: the batch is not committed.
            final StreamingQuery first = track(source("maxRecordsPerTrigger", "2000").select("message_id")
                .writeStream()
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) ->
                {
                    for (final Row r : df.collectAsList())
                    {
                        firstAttempt.add(r.getString(0));
                    }
                    throw new IllegalStateException("injected sink failure in micro-batch " + batchId);
                })
                .start());
            final StreamingQueryException failure = assertThrows(StreamingQueryException.class,
                () -> first.awaitTermination(60_000));
            assertTrue(failure.getMessage().contains("injected sink failure in micro-batch 0"), failure.getMessage());
            assertEquals(2000, firstAttempt.size());
            // Nothing was committed back: the micro-batch's batches are still in the rings, unreleased.
            RingChecks.assertNotReleased(set, RingChecks.loggedStart(checkpoint, 0), RingChecks.loggedEnd(checkpoint, 0));
            assertEquals(10_000, RingChecks.rowsInRings(set, 2), "rows still in the rings");
            assertTrue(gen.isAlive(), "ringgen exits only when everything is committed");

            // Second run from the same checkpoint: micro-batch 0 is replayed with the same messages.
            final StreamingQuery second = track(source("maxRecordsPerTrigger", "2000").select("message_id")
                .writeStream()
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) ->
                {
                    final List<String> rows = new ArrayList<>();
                    for (final Row r : df.collectAsList())
                    {
                        rows.add(r.getString(0));
                    }
                    byBatch.put(batchId, rows);
                })
                .start());
            final JsonNode summary = awaitSummary(gen, second, 60);
            final List<String> replayed = byBatch.get(0L);
            assertEquals(new java.util.TreeSet<>(firstAttempt), new java.util.TreeSet<>(replayed),
                "micro-batch 0 replayed with the same messages");
            assertEquals(firstAttempt.size(), replayed.size());
            final List<String> all = new ArrayList<>();
            byBatch.values().forEach(all::addAll);
            assertExactlyOnce(all, 2, 5000);
            assertAllCommitted(summary, 2, 5000);
        }
    }

    @Test
    @Timeout(90)
    void availableNowEndsWithinTheReadLimitsAndReportsMetrics() throws Exception
    {
        final AtomicLong rows = new AtomicLong();
        try (Ringgen gen = Ringgen.start(set, "-partitions", "2", "-count", "6000", "-size", "256", "-batch-rows", "500",
            "-exit-when-committed"))
        {
            awaitRows(set, 2, 12_000);
            final StreamingQuery q = track(source("maxRecordsPerTrigger", "1800").select("message_id")
                .writeStream()
                .trigger(Trigger.AvailableNow())
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) -> rows.addAndGet(df.count()))
                .start());
            assertTrue(q.awaitTermination(60_000), "Trigger.AvailableNow ends by itself");
            assertTrue(q.exception().isEmpty(), () -> "query failed: " + q.exception());
            // The last micro-batch is committed too (at the trigger that ends the query).
            final JsonNode summary = gen.awaitSummary(60);
            assertAllCommitted(summary, 2, 6000);
            assertEquals(12_000, rows.get());

            final List<StreamingQueryProgress> progress = new ArrayList<>();
            for (final StreamingQueryProgress p : q.recentProgress())
            {
                if (p.numInputRows() > 0)
                {
                    progress.add(p);
                }
            }
            long total = 0;
            for (final StreamingQueryProgress p : progress)
            {
                assertTrue(p.numInputRows() <= 1800, "maxRecordsPerTrigger=1800 exceeded: " + p.numInputRows());
                total += p.numInputRows();
            }
            assertEquals(12_000, total);
            assertTrue(progress.size() >= 7, "micro-batches with data: " + progress.size());
            final SourceProgress first = progress.get(0).sources()[0];
            final Map<String, String> m = first.metrics();
            for (final String k : List.of("num_unacked_messages", "num_unacked_bytes", "num_unread_messages",
                "oldest_unacked_age_ms", "num_rings"))
            {
                assertTrue(m.containsKey(k), "source metric " + k + " in " + m);
            }
            assertEquals("2", m.get("num_rings"));
            assertEquals(12_000, Long.parseLong(m.get("num_unacked_messages")), "backlog before the first commit: " + m);
            assertEquals(12_000 - progress.get(0).numInputRows(), Long.parseLong(m.get("num_unread_messages")), m.toString());
            assertTrue(first.endOffset().contains("\"instance\""), first.endOffset());
            final Map<String, String> last = progress.get(progress.size() - 1).sources()[0].metrics();
            assertTrue(Long.parseLong(last.get("num_unacked_messages")) < 12_000, last.toString());
        }
    }

    @Test
    @Timeout(90)
    void maxBytesPerTriggerHolds() throws Exception
    {
        try (Ringgen gen = Ringgen.start(set, "-partitions", "1", "-count", "4000", "-size", "1000", "-batch-rows", "100",
            "-exit-when-committed"))
        {
            awaitRows(set, 1, 4000);
            final StreamingQuery q = track(source("maxBytesPerTrigger", "350k").select("message_id")
                .writeStream()
                .trigger(Trigger.AvailableNow())
                .option("checkpointLocation", checkpoint.toString())
                .format("noop")
                .start());
            assertTrue(q.awaitTermination(60_000));
            gen.awaitSummary(60);
            long total = 0;
            int batches = 0;
            for (final StreamingQueryProgress p : q.recentProgress())
            {
                // 100 rows x 1000 bytes (+ ids, offsets) per ring batch: 3 fit in 350 KiB, 4 do not.
                assertTrue(p.numInputRows() <= 300, "maxBytesPerTrigger=350k exceeded: " + p.numInputRows() + " rows");
                total += p.numInputRows();
                batches += p.numInputRows() > 0 ? 1 : 0;
            }
            assertEquals(4000, total);
            assertTrue(batches >= 14, "micro-batches: " + batches);
        }
    }

    @Test
    @Timeout(60)
    void everyColumnArrivesWithItsValue() throws Exception
    {
        final long startMs = System.currentTimeMillis();
        final ConcurrentLinkedQueue<Row> rows = new ConcurrentLinkedQueue<>();
        try (Ringgen gen = Ringgen.start(set, "-partitions", "1", "-count", "300", "-size", "40", "-max-size", "90",
            "-attributes", "2", "-ordering-keys", "3", "-exit-when-committed"))
        {
            awaitRows(set, 1, 300);
            final StreamingQuery q = track(source()
                .selectExpr("message_id", "publish_time", "length(data) AS n", "data", "attributes", "ordering_key",
                    "delivery_attempt")
                .writeStream()
                .trigger(Trigger.AvailableNow())
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) -> rows.addAll(df.collectAsList()))
                .start());
            assertTrue(q.awaitTermination(30_000));
            gen.awaitSummary(30);
        }
        assertEquals(300, rows.size());
        for (final Row r : rows)
        {
            final long id = Long.parseLong(r.getString(0));
            final java.sql.Timestamp t = r.getTimestamp(1);
            assertTrue(t.getTime() >= startMs - 60_000 && t.getTime() <= System.currentTimeMillis(), "publish_time " + t);
            final int n = r.getInt(2);
            assertTrue(n >= 40 && n <= 90, "payload size " + n);
            assertTrue(RingChecks.checksumOk((byte[])r.get(3)), "payload checksum of message " + id);
            final scala.collection.Map<String, String> attrs = r.getMap(4);
            assertEquals(2, attrs.size(), "attributes " + attrs);
            assertTrue(attrs.get("a0").get().matches("v[0-9]{7}") && attrs.get("a1").get().matches("v[0-9]{7}"),
                attrs.toString());
            assertEquals("key-" + (id % 3), r.getString(5), "ordering_key of message " + id);
            assertTrue(r.isNullAt(6), "delivery_attempt is null without a dead-letter policy");
        }
    }

    @Test
    @Timeout(60)
    void badOptionsFailWhenTheSourceIsCreatedNamingWhatToFix()
    {
        final Map<String, String> good = Map.of("projectId", PROJECT, "subscriptionId", "sub", "ringRoot", root.toString());
        assertLoadFails(Map.of("projectId", PROJECT, "ringRoot", root.toString()), "option subscriptionId is required");
        assertLoadFails(with(good, "subscriptionID", "sub", "maxRecordPerTrigger", "10"),
            "unknown option \"maxRecordPerTrigger\"", "maxRecordsPerTrigger");
        assertLoadFails(with(good, "maxRecordsPerTrigger", "ten"), "maxRecordsPerTrigger=\"ten\" is not an integer");
        assertLoadFails(with(good, "maxRecordsPerTrigger", "0"), "maxRecordsPerTrigger=0 must be in [1,");
        assertLoadFails(with(good, "maxBytesPerTrigger", "lots"), "maxBytesPerTrigger=\"lots\" is not a size");
        assertLoadFails(with(good, "numPartitions", "5"), "numPartitions=5 exceeds 2 x the total executor cores (2 x 2 = 4)");
        assertLoadFails(with(good, "failOnDataLoss", "maybe"), "failOnDataLoss=\"maybe\" must be true or false");
        assertLoadFails(with(good, "projectId", "Bad_Project"), "projectId=\"Bad_Project\" is not a Pub/Sub project ID");
        assertLoadFails(with(good, "ringRoot", "relative/dir"), "ringRoot=\"relative/dir\" must be an absolute");
        // Valid options, but no ring set and no pullerd on this host.
        assertLoadFails(good, "no ring set for projects/test-project/subscriptions/sub on this host",
            root.resolve("test-project.sub").toString(), "control.sock", "pullerd");
    }

    private static Map<String, String> with(final Map<String, String> base, final String... kv)
    {
        final Map<String, String> m = new HashMap<>(base);
        for (int i = 0; i < kv.length; i += 2)
        {
            m.put(kv[i], kv[i + 1]);
        }
        return m;
    }

    private static void assertLoadFails(final Map<String, String> options, final String... expected)
    {
        final Exception ex = assertThrows(Exception.class,
            () -> spark.readStream().format("pubsub-shm").options(options).load(), "load() with " + options);
        for (final String e : expected)
        {
            assertTrue(ex.getMessage() != null && ex.getMessage().contains(e),
                "error for " + options + " should contain \"" + e + "\": " + ex.getMessage());
        }
    }

    /** Sums the source's custom task metrics as Spark reports them at task end. */
    static final class TaskMetricsListener extends SparkListener
    {
        final AtomicLong records = new AtomicLong();
        final AtomicLong bytes = new AtomicLong();

        @Override
        public void onTaskEnd(final SparkListenerTaskEnd end)
        {
            if (!end.taskInfo().successful())
            {
                return;
            }
            scala.jdk.javaapi.CollectionConverters.asJava(end.taskInfo().accumulables()).forEach(a ->
            {
                final String name = a.name().getOrElse(() -> "");
                final Object update = a.update().getOrElse(() -> null);
                if (update instanceof Number n)
                {
                    if (name.equals("records read from the rings"))
                    {
                        records.addAndGet(n.longValue());
                    }
                    else if (name.equals("bytes read from the rings"))
                    {
                        bytes.addAndGet(n.longValue());
                    }
                }
            });
        }
    }
}
