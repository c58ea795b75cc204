package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.Locale;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.types.DataTypes;

import static org.apache.spark.sql.functions.callUDF;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.sum;
import static org.apache.spark.sql.functions.when;

/**
 * Throughput of a {@code local[2]} query on ringgen data (not a test: run by hand).
 *
 * <pre>
 * mvn -q -f jvm-reader/pom.xml test-compile
 * java $(grep -o '&lt;jvm.opens&gt;[^&lt;]*' ...) -cp jvm-reader/target/test-classes:jvm-reader/target/classes:$(cat jvm-reader/target/classpath.txt) \
 *     dev.pubsubshm.spark.SourceBench [mode] [partitions] [messages per partition] [message bytes] [prefill]
 * </pre>
 *
 * Modes: {@code count} ({@code count()} in {@code foreachBatch}: Spark 4.1's foreachBatch sink
 * turns every column of the micro-batch into rows before the function runs), {@code ids}
 * (only {@code message_id} selected before the sink: the least row conversion),
 * {@code checksum} (every payload byte verified by a UDF), and {@code noop} (all six columns
 * converted to rows into Spark's noop sink). ringgen runs as a
 * separate process on the same cores, as pullerd would; with {@code prefill} (fifth
 * argument) it fills rings large enough for everything before the query starts, so that the
 * figure is the query's alone. Prints one JSON line per run: messages/s and payload MB/s from
 * the query's start to the last message committed, and the steady-state rate over the
 * micro-batches after the first (each takes a tenth of the messages; the first pays for class
 * loading, JIT and code generation).
 */
public final class SourceBench
{
    private SourceBench()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final String mode = args.length > 0 ? args[0] : "count";
        final int partitions = args.length > 1 ? Integer.parseInt(args[1]) : 4;
        final int perPartition = args.length > 2 ? Integer.parseInt(args[2]) : 250_000;
        final int size = args.length > 3 ? Integer.parseInt(args[3]) : 1024;
        // prefill: ringgen writes everything before the query starts (rings big enough to
        // hold it), so that the figure is the query's alone, not the generator's.
        final boolean prefill = args.length > 4 && args[4].equals("prefill");
        long capacity = 64 << 20;
        while (prefill && capacity < (long)perPartition * (size + 128) * 5 / 4)
        {
            capacity *= 2;
        }
        final Path root = Ringgen.newRoot("pubsub-shm-bench-");
        final SparkSession spark = SparkSession.builder().master("local[2]").appName("SourceBench")
            .config("spark.ui.enabled", "false").config("spark.sql.streaming.pollingDelay", "1ms").getOrCreate();
        spark.sparkContext().setLogLevel("WARN");
        spark.udf().register("checksumOk", (UDF1<byte[], Boolean>)RingChecks::checksumOk, DataTypes.BooleanType);
        try (Ringgen gen = Ringgen.start(root.resolve("bench.sub"), "-partitions", Integer.toString(partitions),
            "-count", Integer.toString(perPartition), "-size", Integer.toString(size), "-capacity",
            Long.toString(capacity), "-batch-bytes", Long.toString(Math.min(8 << 20, capacity / 8)), "-exit-when-committed"))
        {
            final AtomicLong rows = new AtomicLong();
            final AtomicLong bad = new AtomicLong();
            // About ten micro-batches: the first pays for class loading, JIT and code generation;
            // the steady-state rate is measured over the others.
            final Dataset<Row> in = spark.readStream().format("pubsub-shm").option("projectId", "bench")
                .option("subscriptionId", "sub").option("ringRoot", root.toString())
                .option("maxRecordsPerTrigger", Long.toString(Math.max(1, (long)partitions * perPartition / 10))).load();
            if (prefill)
            {
                while (RingChecks.rowsInRings(root.resolve("bench.sub"), partitions) < (long)partitions * perPartition)
                {
                    Thread.sleep(10);
                }
            }
            final long start = System.nanoTime();
            final StreamingQuery q = switch (mode)
            {
                case "count" -> in.writeStream().option("checkpointLocation", root.resolve("cp").toString())
                    .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, id) -> rows.addAndGet(df.count())).start();
                case "ids" -> in.select("message_id").writeStream().option("checkpointLocation", root.resolve("cp").toString())
                    .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, id) -> rows.addAndGet(df.count())).start();
                case "checksum" -> in.writeStream().option("checkpointLocation", root.resolve("cp").toString())
                    .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, id) ->
                    {
                        final Row r = df.agg(sum(when(callUDF("checksumOk", col("data")), 0).otherwise(1)),
                            org.apache.spark.sql.functions.count("*")).first();
                        if (!r.isNullAt(0))
                        {
                            bad.addAndGet(r.getLong(0));
                        }
                        rows.addAndGet(r.getLong(1));
                    }).start();
                case "noop" -> in.writeStream().option("checkpointLocation", root.resolve("cp").toString())
                    .format("noop").start();
                default -> throw new IllegalArgumentException("mode " + mode + ": want count, ids, checksum or noop");
            };
            final JsonNode summary = gen.awaitSummary(TimeUnit.MINUTES.toSeconds(20));
            final double s = (System.nanoTime() - start) / 1e9;
            q.stop();
            long steadyRows = 0;
            long steadyMs = 0;
            for (final org.apache.spark.sql.streaming.StreamingQueryProgress p : q.recentProgress())
            {
                if (Boolean.getBoolean("bench.progress"))
                {
                    System.err.println("progress " + p.batchId() + " rows=" + p.numInputRows() + " durations=" + p.durationMs());
                }
                if (p.batchId() > 0 && p.numInputRows() > 0)
                {
                    steadyRows += p.numInputRows();
                    steadyMs += p.durationMs().get("triggerExecution");
                }
            }
            long msgs = 0;
            long bytes = 0;
            for (final JsonNode p : summary.path("partitions"))
            {
                msgs += p.path("rows_committed").asLong();
                bytes += p.path("bytes").asLong();
            }
            System.out.printf(Locale.ROOT, "{\"mode\":\"%s\",\"partitions\":%d,\"msg_size\":%d,\"msgs\":%d,\"seconds\":%.2f," +
                    "\"msgs_per_s\":%.0f,\"mb_per_s\":%.1f,\"steady_msgs_per_s\":%.0f,\"steady_mb_per_s\":%.1f," +
                    "\"bad_checksums\":%d,\"rows_seen\":%d}%n", mode, partitions, size, msgs, s, msgs / s, bytes / s / 1e6,
                steadyRows * 1000.0 / Math.max(1, steadyMs), steadyRows * (double)size * 1000.0 / Math.max(1, steadyMs) / 1e6,
                bad.get(), rows.get());
        }
        finally
        {
            spark.stop();
            RingRegistry.get().detachIdle();
            Ringgen.deleteTree(root);
        }
    }
}
