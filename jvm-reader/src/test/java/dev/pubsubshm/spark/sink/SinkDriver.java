package dev.pubsubshm.spark.sink;

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;

import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.Trigger;

import static org.apache.spark.sql.functions.col;

/**
 * The Java end of the Go-driven sink tests (pullerd/internal/daemon, tag crossproc): a Spark
 * (local[2]) that runs the commands it reads on stdin, one per line, against the pullerd whose
 * root is {@code --ring-root}, and answers one line per command: {@code OK ...} or
 * {@code FAILED <message>}.
 *
 * <pre>
 * rows TOPIC N batch|stream   write rows 0..N-1 of {@link #rows} (batch: df.write; stream: a file
 *                             stream read with AvailableNow, one file per key group and micro-batch)
 * e2e SUB TOPIC               start: read SUB with format("pubsub-shm"), prefix data with "e2e:",
 *                             add attribute src_id = message_id, write TOPIC; answers STARTED
 * stop                        stop the e2e query; answers OK
 * quit                        exit 0
 * </pre>
 */
public final class SinkDriver
{
    private SinkDriver()
    {
    }

    /**
     * The rows of the tests, a pure function of the id (the Go test computes the same):
     * data = "row-%08d|" + (id % 200) times the letter 'A' + id % 26; attributes null when
     * id % 4 == 0, else {row: id, mod: id % 10}; ordering_key null when id % 3 == 0, else
     * "key-" + id % 13. Rows of one key are in one partition, in id order.
     */
    static Dataset<Row> rows(final SparkSession spark, final long n)
    {
        return spark.range(0, n, 1, 4).selectExpr(
                "id",
                "cast(concat(format_string('row-%08d|', id), repeat(chr(65 + cast(id % 26 as int)), cast(id % 200 as int))) as binary) as data",
                "CASE WHEN id % 4 = 0 THEN NULL ELSE map('row', cast(id as string), 'mod', cast(id % 10 as string)) END as attributes",
                "CASE WHEN id % 3 = 0 THEN NULL ELSE concat('key-', cast(id % 13 as string)) END as ordering_key")
            .repartition(2, col("ordering_key")).sortWithinPartitions("id");
    }

    private static void deleteTree(final Path dir)
    {
        try (java.util.stream.Stream<Path> s = Files.walk(dir))
        {
            s.sorted(java.util.Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
        catch (final java.io.IOException ex)
        {
            System.err.println("sink driver: cannot remove " + dir + ": " + ex);
        }
    }

    public static void main(final String[] args) throws Exception
    {
        String root = null;
        String project = null;
        for (int i = 0; i + 1 < args.length; i += 2)
        {
            switch (args[i])
            {
                case "--ring-root" -> root = args[i + 1];
                case "--project" -> project = args[i + 1];
                default -> throw new IllegalArgumentException("unknown flag " + args[i]);
            }
        }
        final Path tmp = Files.createTempDirectory("sink-driver-");
        Runtime.getRuntime().addShutdownHook(new Thread(() -> deleteTree(tmp), "sink-driver-cleanup"));
        final SparkSession spark = SparkSession.builder()
            .master("local[2]")
            .appName("SinkDriver")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.streaming.pollingDelay", "5ms")
            .getOrCreate();
        System.out.println("READY");
        System.out.flush();
        final BufferedReader in = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
        StreamingQuery e2e = null;
        int seq = 0;
        String line;
        while ((line = in.readLine()) != null)
        {
            final String[] w = line.trim().split("\\s+");
            final long start = System.nanoTime();
            try
            {
                switch (w[0])
                {
                    case "rows" ->
                    {
                        final long n = Long.parseLong(w[2]);
                        final Dataset<Row> df = rows(spark, n);
                        if (w[3].equals("batch"))
                        {
                            df.drop("id").write().format("pubsub-shm").mode("append").option("projectId", project)
                                .option("topicId", w[1]).option("ringRoot", root).save();
                        }
                        else
                        {
                            final Path files = tmp.resolve("files-" + seq++);
                            df.write().parquet(files.toString());
                            final StreamingQuery q = spark.readStream().schema(df.schema())
                                .option("maxFilesPerTrigger", 1).parquet(files.toString())
                                .drop("id")
                                .writeStream().format("pubsub-shm").option("projectId", project).option("topicId", w[1])
                                .option("ringRoot", root).option("batchRows", 1000)
                                .option("checkpointLocation", tmp.resolve("ckpt-" + seq++).toString())
                                .trigger(Trigger.AvailableNow()).start();
                            q.awaitTermination();
                        }
                        System.out.println("OK rows=" + n + " ms=" + TimeUnit.NANOSECONDS.toMillis(System.nanoTime() - start));
                    }
                    case "e2e" ->
                    {
                        e2e = spark.readStream().format("pubsub-shm").option("projectId", project)
                            .option("subscriptionId", w[1]).option("ringRoot", root).load()
                            .selectExpr("concat(cast('e2e:' as binary), data) as data",
                                "map_concat(attributes, map('src_id', message_id)) as attributes", "ordering_key")
                            .writeStream().format("pubsub-shm").option("projectId", project).option("topicId", w[2])
                            .option("ringRoot", root)
                            .option("checkpointLocation", tmp.resolve("ckpt-" + seq++).toString())
                            .trigger(Trigger.ProcessingTime(100)).start();
                        System.out.println("STARTED");
                    }
                    case "stop" ->
                    {
                        if (e2e != null)
                        {
                            if (e2e.exception().isDefined())
                            {
                                throw e2e.exception().get();
                            }
                            e2e.stop();
                            e2e = null;
                        }
                        System.out.println("OK");
                    }
                    case "quit" ->
                    {
                        spark.stop();
                        System.out.println("BYE");
                        System.out.flush();
                        return;
                    }
                    default -> System.out.println("FAILED unknown command " + w[0]);
                }
            }
            catch (final Throwable ex)
            {
                Throwable t = ex;
                final StringBuilder msg = new StringBuilder();
                while (t != null)
                {
                    msg.append(" | ").append(t.getClass().getSimpleName()).append(": ").append(t.getMessage());
                    t = t.getCause();
                }
                System.out.println("FAILED" + msg.toString().replace('\n', ' '));
            }
            System.out.flush();
        }
    }
}
