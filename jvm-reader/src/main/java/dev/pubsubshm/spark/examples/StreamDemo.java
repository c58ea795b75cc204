package dev.pubsubshm.spark.examples;

import static org.apache.spark.sql.functions.count;
import static org.apache.spark.sql.functions.length;
import static org.apache.spark.sql.functions.max;
import static org.apache.spark.sql.functions.min;
import static org.apache.spark.sql.functions.sum;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.concurrent.TimeUnit;

import org.apache.spark.api.java.function.VoidFunction2;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.Trigger;

/**
 * The query of {@code make run}: reads {@code format("pubsub-shm")} in local mode and prints,
 * per micro-batch, the message count, payload bytes and lag (now minus the oldest publish
 * time in the batch). Each micro-batch is acked by pullerd once Spark commits it. Stops on
 * SIGINT/SIGTERM (a shutdown hook stops the query) or after {@code --duration} seconds.
 *
 * <pre>
 * StreamDemo --project demo --subscription events-sub [--ring-root DIR] [--trigger "2 seconds"] [--duration 0]
 * </pre>
 */
public final class StreamDemo
{
    private StreamDemo()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        String project = null, subscription = null, ringRoot = null, trigger = "2 seconds";
        long durationS = 0;
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--project" -> project = args[++i];
                case "--subscription" -> subscription = args[++i];
                case "--ring-root" -> ringRoot = args[++i];
                case "--trigger" -> trigger = args[++i];
                case "--duration" -> durationS = Long.parseLong(args[++i]);
                default -> throw new IllegalArgumentException("StreamDemo: unknown argument " + args[i]);
            }
        }
        if (project == null || subscription == null)
        {
            throw new IllegalArgumentException("StreamDemo: --project and --subscription are required");
        }
        final Path checkpoint = Files.createTempDirectory("pubsub-shm-demo-checkpoint");
        final SparkSession spark = SparkSession.builder()
            .appName("pubsub-shm make run")
            .master("local[2]")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.streaming.checkpointLocation", checkpoint.toString())
            .getOrCreate();
        spark.sparkContext().setLogLevel("WARN");

        var reader = spark.readStream().format("pubsub-shm")
            .option("projectId", project)
            .option("subscriptionId", subscription);
        if (ringRoot != null)
        {
            reader = reader.option("ringRoot", ringRoot);
        }
        final Dataset<Row> messages = reader.load();

        final VoidFunction2<Dataset<Row>, Long> report = (batch, id) ->
        {
            final Row r = batch.agg(count("*"), sum(length(batch.col("data"))), min("publish_time"), max("publish_time")).first();
            final long n = r.getLong(0);
            if (n == 0)
            {
                System.out.printf("batch %d: no new messages%n", id);
                return;
            }
            final long bytes = r.isNullAt(1) ? 0 : r.getLong(1);
            final Instant oldest = ((java.sql.Timestamp)r.get(2)).toInstant();
            final Instant newest = ((java.sql.Timestamp)r.get(3)).toInstant();
            System.out.printf("batch %d: %d messages, %d payload bytes, lag %d ms (oldest %s, newest %s); acked when this batch commits%n",
                id, n, bytes, Duration.between(oldest, Instant.now()).toMillis(), oldest, newest);
        };
        final StreamingQuery query = messages.writeStream()
            .queryName("pubsub_shm_demo")
            .trigger(Trigger.ProcessingTime(trigger))
            .foreachBatch(report)
            .start();

        final Thread hook = new Thread(() ->
        {
            try
            {
                query.stop();
                spark.stop();
            }
            catch (final Exception ex)
            {
                System.err.println("StreamDemo: stopping: " + ex);
            }
        }, "stream-demo-shutdown");
        Runtime.getRuntime().addShutdownHook(hook);
        if (durationS > 0)
        {
            query.awaitTermination(TimeUnit.SECONDS.toMillis(durationS));
        }
        else
        {
            query.awaitTermination();
        }
        if (query.exception().isDefined())
        {
            throw query.exception().get();
        }
        final var last = query.lastProgress();
        if (last != null && last.sources().length > 0)
        {
            System.out.println("StreamDemo: last micro-batch " + last.batchId() + ": " + last.numInputRows() + " rows, source metrics " +
                last.sources()[0].metrics());
        }
        Runtime.getRuntime().removeShutdownHook(hook);
        query.stop();
        spark.stop();
    }
}
