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
            final JsonNode summary = gen.awaitSummary(100);
            q.stop();
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
