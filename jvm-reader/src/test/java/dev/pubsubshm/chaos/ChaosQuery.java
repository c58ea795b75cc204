package dev.pubsubshm.chaos;

import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.crc32;
import static org.apache.spark.sql.functions.length;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.zip.CRC32;

import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.Trigger;

import dev.pubsubshm.spark.RingRegistry;

/**
 * The Spark side of the chaos tests (chaos/ in the Go module): a real Spark local-mode
 * application reading {@code format("pubsub-shm")} into a file sink, run as its own JVM
 * so that the Go harness can SIGKILL it at any moment and restart it from its checkpoint.
 *
 * <p>The sink is a {@code foreachBatch} that collects {@code message_id}, CRC32 and length
 * of {@code data}, the number of attributes and the CRC32 of the attributes as
 * {@code key=value\n} lines in key order, of every row, and writes them as one file per
 * execution of a micro-batch ({@code batch-<id>-<pid>-<nanos>.tsv}, written to a temporary
 * name and renamed into place). A micro-batch executed twice (replayed after a crash)
 * therefore leaves two files: the harness counts those rows as duplicates. The file is in
 * place before {@code foreachBatch} returns, hence before Spark writes the micro-batch to
 * its commit log and long before pullerd acknowledges it: an acked message that is not in
 * any file means something was acked before it was committed.
 *
 * <p>Stdout carries one line per event, for the harness: {@code chaos: started},
 * {@code chaos: batch <id> start}, {@code chaos: batch <id> done <rows>},
 * {@code chaos: query failed: <message>}, and once the stop file appears (the query stops
 * cleanly, then Spark) {@code chaos: stopped arrow_allocated=<bytes>}: the Arrow memory still
 * allocated, which must be 0. Exit status 0 after a clean stop, 3 if the query failed.
 *
 * <pre>
 * ChaosQuery --project P --subscription S --ring-root DIR --checkpoint DIR --out DIR
 *            [--trigger "500 milliseconds"] [--batch-delay-ms 0] [--fail-on-data-loss true]
 *            --stop-file FILE [--partitions N] [--max-records-per-trigger N]
 * </pre>
 */
public final class ChaosQuery
{
    private ChaosQuery()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        String project = null, subscription = null, ringRoot = null, checkpoint = null, out = null;
        String trigger = "500 milliseconds", failOnDataLoss = "true", partitions = null, maxRecords = null;
        String stopFile = null;
        long batchDelayMs = 0;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--project" -> project = args[++i];
                case "--subscription" -> subscription = args[++i];
                case "--ring-root" -> ringRoot = args[++i];
                case "--checkpoint" -> checkpoint = args[++i];
                case "--out" -> out = args[++i];
                case "--trigger" -> trigger = args[++i];
                case "--batch-delay-ms" -> batchDelayMs = Long.parseLong(args[++i]);
                case "--fail-on-data-loss" -> failOnDataLoss = args[++i];
                case "--partitions" -> partitions = args[++i];
                case "--max-records-per-trigger" -> maxRecords = args[++i];
                case "--stop-file" -> stopFile = args[++i];
                default -> throw new IllegalArgumentException("ChaosQuery: unknown argument " + args[i]);
            }
        }
        if (project == null || subscription == null || ringRoot == null || checkpoint == null || out == null ||
            stopFile == null)
        {
            throw new IllegalArgumentException("ChaosQuery: --project, --subscription, --ring-root, --checkpoint, --out " +
                "and --stop-file are required");
        }
        final Path outDir = Path.of(out);
        Files.createDirectories(outDir);
        final SparkSession spark = SparkSession.builder()
            .appName("pubsub-shm chaos")
            .master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.streaming.checkpointLocation", checkpoint)
            .getOrCreate();
        spark.sparkContext().setLogLevel("WARN");

        var reader = spark.readStream().format("pubsub-shm")
            .option("projectId", project)
            .option("subscriptionId", subscription)
            .option("ringRoot", ringRoot)
            .option("failOnDataLoss", failOnDataLoss);
        if (partitions != null)
        {
            reader = reader.option("numPartitions", partitions);
        }
        if (maxRecords != null)
        {
            reader = reader.option("maxRecordsPerTrigger", maxRecords);
        }
        final Dataset<Row> messages = reader.load();
        final long delay = batchDelayMs;
        final long pid = ProcessHandle.current().pid();

        final VoidFunction2<Dataset<Row>, Long> sink = (batch, id) ->
        {
            say("batch " + id + " start");
            final List<Row> rows = batch.select(col("message_id"), crc32(col("data")), length(col("data")),
                col("attributes")).collectAsList();
            if (delay > 0)
            {
                Thread.sleep(delay);
            }
            final StringBuilder sb = new StringBuilder(rows.size() * 40);
            for (final Row r : rows)
            {
                final Map<String, String> attrs = new TreeMap<>(r.getJavaMap(3));
                final CRC32 digest = new CRC32();
                for (final Map.Entry<String, String> e : attrs.entrySet())
                {
                    digest.update((e.getKey() + "=" + e.getValue() + "\n").getBytes(StandardCharsets.UTF_8));
                }
                sb.append(r.getString(0)).append('\t').append(r.getLong(1)).append('\t').append(r.getInt(2)).append('\t')
                    .append(attrs.size()).append('\t').append(digest.getValue()).append('\n');
            }
            final String name = String.format("batch-%08d-%d-%d.tsv", id, pid, System.nanoTime());
            final Path tmp = outDir.resolve("." + name + ".tmp");
            try
            {
                Files.write(tmp, sb.toString().getBytes(StandardCharsets.UTF_8));
                Files.move(tmp, outDir.resolve(name), StandardCopyOption.ATOMIC_MOVE);
            }
            catch (final IOException ex)
            {
                throw new UncheckedIOException(ex);
            }
            say("batch " + id + " done " + rows.size());
        };
        final StreamingQuery query = messages.writeStream()
            .queryName("pubsub_shm_chaos")
            .trigger(Trigger.ProcessingTime(trigger))
            .foreachBatch(sink)
            .start();
        say("started");
        final Path stop = Path.of(stopFile);
        try
        {
            while (!query.awaitTermination(200))
            {
                if (Files.exists(stop))
                {
                    query.stop();
                    break;
                }
            }
        }
        catch (final Exception ex)
        {
            say("query failed: " + oneLine(ex));
            System.out.flush();
            Runtime.getRuntime().halt(3);
        }
        if (query.exception().isDefined())
        {
            say("query failed: " + oneLine(query.exception().get()));
            System.out.flush();
            Runtime.getRuntime().halt(3);
        }
        spark.stop();
        // Every Arrow buffer a reader loaded from the rings must be released by now.
        say("stopped arrow_allocated=" + RingRegistry.get().allocator().getAllocatedMemory());
        System.exit(0);
    }

    /**
     * @param t a failure.
     * @return it and its causes on one line, for the harness's event lines (ClusterQuery too).
     */
    public static String oneLine(final Throwable t)
    {
        final StringBuilder sb = new StringBuilder();
        for (Throwable c = t; c != null; c = c.getCause())
        {
            if (sb.length() > 0)
            {
                sb.append(" | caused by: ");
            }
            sb.append(c.getClass().getSimpleName()).append(": ").append(c.getMessage());
            if (c.getCause() == c)
            {
                break;
            }
        }
        return sb.toString().replace('\n', ' ');
    }

    private static synchronized void say(final String line)
    {
        System.out.println("chaos: " + line);
        System.out.flush();
    }
}
