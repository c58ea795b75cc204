package dev.pubsubshm.spark.sink;

import java.util.HashMap;
import java.util.Map;

import java.nio.charset.StandardCharsets;

import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.util.ArrayBasedMapData;
import org.apache.spark.sql.catalyst.util.GenericArrayData;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;

import dev.pubsubshm.bench.common.JsonLine;
import dev.pubsubshm.bench.common.JvmMeter;

/**
 * The JVM side of {@code bench/cmd/sinkbench}: a Spark (local[N]) that writes generated rows
 * through {@code format("pubsub-shm")} to a pullerd that publishes them into an emulator, and
 * the same query into Spark's {@code noop} sink, so that the sink's own cost (CPU, heap per
 * message) can be told from Spark's cost of producing the rows. Prints one JSON line per run.
 *
 * <pre>
 * java ... dev.pubsubshm.spark.sink.SinkBench --ring-root R --project P --topic T --msgs N --size S [--cores C] [--warmup W]
 * </pre>
 *
 * Rows: {@code data} = the row number and padding to {@code size} bytes, no attributes, no
 * ordering key (the payload path); {@code --attrs} adds two attributes and an ordering key.
 * A third peer, {@code pubsub-shm-datawriter}, drives one sink DataWriter directly with
 * prepared UnsafeRows: the sink's own throughput and heap per message without Spark's
 * row production. Each measured run is repeated {@code --reps} times (default 3); the
 * median run by time is printed.
 */
public final class SinkBench
{
    private SinkBench()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        final Map<String, String> a = new HashMap<>(Map.of("--cores", "2", "--warmup", "20000", "--attrs", "false",
            "--batch-bytes", "1m", "--reps", "3"));
        for (int i = 0; i + 1 < args.length; i += 2)
        {
            a.put(args[i], args[i + 1]);
        }
        final long msgs = Long.parseLong(a.get("--msgs"));
        final int size = Integer.parseInt(a.get("--size"));
        final int cores = Integer.parseInt(a.get("--cores"));
        final long warmup = Long.parseLong(a.get("--warmup"));
        final boolean attrs = Boolean.parseBoolean(a.get("--attrs"));
        final SparkSession spark = SparkSession.builder()
            .master("local[" + cores + "]")
            .appName("SinkBench")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", Integer.toString(cores))
            .getOrCreate();
        spark.sparkContext().setLogLevel("WARN");
        final int reps = Integer.parseInt(a.get("--reps"));
        final JsonLine[] lines = new JsonLine[reps];
        final JvmMeter meter = new JvmMeter();
        try
        {
            // Warm-up: class loading and JIT of every path are not measured.
            run(spark, "noop", a, rows(spark, warmup, size, cores, attrs));
            run(spark, "sink", a, rows(spark, warmup, size, cores, attrs));
            direct(a, warmup, size, attrs);
            for (final String peer : new String[] {"noop", "sink", "direct"})
            {
                JsonLine best = null;
                final double[] secs = new double[reps];
                for (int rep = 0; rep < reps; rep++)
                {
                    final Dataset<Row> df = rows(spark, msgs, size, cores, attrs);
                    System.gc();
                    meter.start();
                    long writerThreadAlloc = -1;
                    if (peer.equals("direct"))
                    {
                        writerThreadAlloc = direct(a, msgs, size, attrs);
                    }
                    else
                    {
                        run(spark, peer, a, df);
                    }
                    final JvmMeter.Reading r = meter.read();
                    secs[rep] = r.elapsedNs() / 1e9;
                    final double bytes = (double)msgs * size;
                    final JsonLine line = new JsonLine()
                        .put("bench", "sink")
                        .put("peer", switch (peer)
                        {
                            case "noop" -> "spark-noop-sink";
                            case "sink" -> "spark-pubsub-shm-sink";
                            default -> "pubsub-shm-datawriter";
                        })
                        .put("msgs", msgs)
                        .put("size", size)
                        .put("attrs", attrs)
                        .put("cores", peer.equals("direct") ? 1 : cores)
                        .put("seconds", secs[rep])
                        .put("msgs_per_s", msgs / secs[rep])
                        .put("mb_per_s", bytes / secs[rep] / 1e6)
                        .put("jvm_cpu_s", r.cpuNs() / 1e9)
                        .put("jvm_cpu_s_per_gb", r.cpuNs() / 1e9 / (bytes / 1e9))
                        .put("heap_bytes_per_msg", (double)r.allocBytes() / msgs)
                        .put("gc_count", r.gcCount())
                        .put("gc_ms", r.gcTimeMs())
                        .put("rss_mb", r.rssBytes() / 1e6)
                        .put("reps", reps);
                    if (writerThreadAlloc >= 0)
                    {
                        // the task thread alone: the writer's own allocation, attach and commit included
                        line.put("writer_thread_heap_bytes_per_msg", (double)writerThreadAlloc / msgs);
                    }
                    lines[rep] = line;
                }
                // the median run by time is reported
                final double[] sorted = secs.clone();
                java.util.Arrays.sort(sorted);
                for (int i = 0; i < reps && best == null; i++)
                {
                    if (secs[i] == sorted[reps / 2])
                    {
                        best = lines[i];
                    }
                }
                System.out.println(best);
                System.out.flush();
                java.util.Arrays.fill(lines, null);
            }
        }
        finally
        {
            meter.close();
            spark.stop();
        }
    }

    /**
     * The DataWriter alone, outside Spark's query engine: n rows from 1024 prepared UnsafeRows
     * (reused), through one TopicDataWriter, committed. What the sink itself costs per message.
     */
    private static long direct(final Map<String, String> a, final long n, final int size, final boolean attrs)
        throws java.io.IOException
    {
        final UnsafeRow[] rows = prepared(size, attrs);
        final SinkOptions options = SinkOptions.parse(Map.of("projectId", a.get("--project"), "topicId", a.get("--topic"),
            "ringRoot", a.get("--ring-root"), "batchBytes", a.get("--batch-bytes")), Map.of());
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean)java.lang.management.ManagementFactory.getThreadMXBean();
        final long self = Thread.currentThread().getId();
        final long before = threads.getThreadAllocatedBytes(self);
        final TopicDataWriter w = new TopicDataWriter(options, InputColumns.resolve(DIRECT_SCHEMA), false, "bench", 0, 0, -1);
        try
        {
            for (long i = 0; i < n; i++)
            {
                w.write(rows[(int)(i & 1023)]);
            }
            w.commit();
        }
        finally
        {
            w.close();
        }
        return threads.getThreadAllocatedBytes(self) - before;
    }

    private static final StructType DIRECT_SCHEMA = new StructType().add("data", DataTypes.BinaryType)
        .add("attributes", DataTypes.createMapType(DataTypes.StringType, DataTypes.StringType))
        .add("ordering_key", DataTypes.StringType);
    private static UnsafeRow[] preparedRows;

    /** 1024 UnsafeRows of the bench's messages, made once (before the measured runs) and reused. */
    private static UnsafeRow[] prepared(final int size, final boolean attrs)
    {
        if (preparedRows != null && preparedRows[0].getBinary(0).length == size && attrs == !preparedRows[0].isNullAt(2))
        {
            return preparedRows;
        }
        final UnsafeProjection proj = UnsafeProjection.create(DIRECT_SCHEMA);
        final UnsafeRow[] rows = new UnsafeRow[1024];
        for (int i = 0; i < rows.length; i++)
        {
            final StringBuilder sb = new StringBuilder(Integer.toString(i));
            while (sb.length() < size)
            {
                sb.append('x');
            }
            Object map = null;
            Object key = null;
            if (attrs)
            {
                map = new ArrayBasedMapData(new GenericArrayData(new Object[] {UTF8String.fromString("row"),
                    UTF8String.fromString("source")}), new GenericArrayData(new Object[] {UTF8String.fromString(Integer.toString(i)),
                    UTF8String.fromString("bench")}));
                key = UTF8String.fromString("key-" + (i % 64));
            }
            rows[i] = proj.apply(new GenericInternalRow(new Object[] {sb.toString().getBytes(StandardCharsets.US_ASCII), map, key}))
                .copy();
        }
        preparedRows = rows;
        return rows;
    }

    private static Dataset<Row> rows(final SparkSession spark, final long n, final int size, final int cores,
        final boolean attrs)
    {
        final String data = "cast(rpad(cast(id as string), " + size + ", 'x') as binary) as data";
        if (!attrs)
        {
            return spark.range(0, n, 1, cores).selectExpr(data);
        }
        return spark.range(0, n, 1, cores).selectExpr(data,
            "map('row', cast(id as string), 'source', 'bench') as attributes",
            "concat('key-', cast(id % 64 as string)) as ordering_key");
    }

    private static void run(final SparkSession spark, final String sink, final Map<String, String> a, final Dataset<Row> df)
    {
        if (sink.equals("noop"))
        {
            df.write().format("noop").mode("overwrite").save();
            return;
        }
        df.write().format("pubsub-shm").mode("append")
            .option("projectId", a.get("--project"))
            .option("topicId", a.get("--topic"))
            .option("ringRoot", a.get("--ring-root"))
            .option("batchBytes", a.get("--batch-bytes"))
            .save();
    }
}
