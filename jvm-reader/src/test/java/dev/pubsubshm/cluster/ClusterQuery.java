package dev.pubsubshm.cluster;

import static org.apache.spark.sql.functions.call_function;
import static org.apache.spark.sql.functions.col;
import static org.apache.spark.sql.functions.crc32;
import static org.apache.spark.sql.functions.length;
import static org.apache.spark.sql.functions.lit;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;

import org.apache.spark.SparkConf;
import org.apache.spark.SparkContext;
import org.apache.spark.scheduler.SparkListener;
import org.apache.spark.scheduler.SparkListenerExecutorAdded;
import org.apache.spark.sql.Dataset;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.SparkSession;
import org.apache.spark.sql.streaming.StreamingQuery;
import org.apache.spark.sql.streaming.StreamingQueryListener;
import org.apache.spark.sql.streaming.Trigger;

import dev.pubsubshm.chaos.ChaosQuery;

/**
 * The driver of the cluster test (pullerd/internal/chaos/cluster_test.go, {@code make
 * cluster-test}): a Spark application on a real standalone cluster (master {@code --conf
 * spark.master=spark://...}) whose executors run on simulated hosts, each with its own
 * pullerd and its own /dev/shm. It reads {@code format("pubsub-shm")} and writes to a real
 * file sink ({@code format("json")}, with its {@code _spark_metadata} log) with a checkpoint.
 *
 * <p>Each sink row is {@code message_id}, {@code crc} (CRC-32 of {@code data}), {@code len}
 * (length of {@code data}) and {@code host}: the {@code SPARK_LOCAL_IP} of the executor that
 * read it (the simulated host; {@code reflect} is a built-in SQL function, so the executors
 * need no class of this test, only the connector jar from {@code spark.jars}).
 *
 * <p>The driver holds one string shaped like an emulator ack id ({@code m<canary>:7}), built
 * at run time, for the harness's heap-dump scan: the scan must find that one (its positive
 * control) and no real ack id.
 *
 * <p>Stdout carries one line per event: {@code cluster: executors <n> <hosts>} (once the
 * expected executors registered), {@code cluster: started}, {@code cluster: batch <id> done
 * <rows> <epoch ms of the trigger> <duration ms>} (from a {@link StreamingQueryListener}),
 * {@code cluster: executor added <id> <host> <epoch ms>}, {@code cluster: query failed: <message>} (exit 3), {@code cluster: stopped} after the stop
 * file appeared and the query and Spark stopped (exit 0).
 *
 * <pre>
 * ClusterQuery --project P --subscription S --ring-root DIR --checkpoint DIR --out DIR
 *              --stop-file FILE --executors N --canary N [--partitions N]
 *              [--trigger "1 second"] [--fail-on-data-loss true] [--no-host-column] [--conf key=value]...
 * </pre>
 *
 * <p>{@code --executors 0} waits for none (a local master, for the throughput comparison);
 * {@code --no-host-column} leaves the per-row {@code reflect} call out (throughput runs).
 */
public final class ClusterQuery
{
    /** The positive control of the heap-dump scan; kept reachable for the life of the JVM. */
    static volatile String canary;

    private ClusterQuery()
    {
    }

    public static void main(final String[] args) throws Exception
    {
        String project = null, subscription = null, ringRoot = null, checkpoint = null, out = null, stopFile = null;
        String trigger = "1 second", partitions = null, failOnDataLoss = "true";
        boolean hostColumn = true;
        int executors = 0;
        long canaryNumber = -1;
        final SparkConf conf = new SparkConf();
        for (int i = 0; i < args.length; i++)
        {
            switch (args[i])
            {
                case "--project" -> project = args[++i];
                case "--subscription" -> subscription = args[++i];
                case "--ring-root" -> ringRoot = args[++i];
                case "--checkpoint" -> checkpoint = args[++i];
                case "--out" -> out = args[++i];
                case "--stop-file" -> stopFile = args[++i];
                case "--executors" -> executors = Integer.parseInt(args[++i]);
                case "--canary" -> canaryNumber = Long.parseLong(args[++i]);
                case "--partitions" -> partitions = args[++i];
                case "--trigger" -> trigger = args[++i];
                case "--fail-on-data-loss" -> failOnDataLoss = args[++i];
                case "--no-host-column" -> hostColumn = false;
                case "--conf" ->
                {
                    final String kv = args[++i];
                    final int eq = kv.indexOf('=');
                    if (eq <= 0)
                    {
                        throw new IllegalArgumentException("ClusterQuery: --conf wants key=value, got " + kv);
                    }
                    conf.set(kv.substring(0, eq), kv.substring(eq + 1));
                }
                default -> throw new IllegalArgumentException("ClusterQuery: unknown argument " + args[i]);
            }
        }
        if (project == null || subscription == null || ringRoot == null || checkpoint == null || out == null ||
            stopFile == null || executors < 0 || canaryNumber < 0)
        {
            throw new IllegalArgumentException("ClusterQuery: --project, --subscription, --ring-root, --checkpoint, " +
                "--out, --stop-file, --executors and --canary are required");
        }
        canary = new StringBuilder().append('m').append(canaryNumber).append(':').append(7).toString();

        final SparkSession spark = SparkSession.builder()
            .appName("pubsub-shm cluster")
            .config(conf)
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .getOrCreate();
        spark.sparkContext().setLogLevel("WARN");
        spark.sparkContext().addSparkListener(new SparkListener()
        {
            @Override
            public void onExecutorAdded(final SparkListenerExecutorAdded added)
            {
                say("executor added " + added.executorId() + " " + added.executorInfo().executorHost() + " " +
                    added.time());
            }
        });
        waitForExecutors(spark.sparkContext(), executors);

        spark.streams().addListener(new StreamingQueryListener()
        {
            @Override
            public void onQueryStarted(final QueryStartedEvent event)
            {
            }

            @Override
            public void onQueryProgress(final QueryProgressEvent event)
            {
                final var p = event.progress();
                final long at = java.time.Instant.parse(p.timestamp()).toEpochMilli();
                final Long total = p.durationMs().get("triggerExecution");
                say("batch " + p.batchId() + " done " + p.numInputRows() + " " + at + " " + (total == null ? 0 : total));
            }

            @Override
            public void onQueryTerminated(final QueryTerminatedEvent event)
            {
            }
        });

        var reader = spark.readStream().format("pubsub-shm")
            .option("projectId", project)
            .option("subscriptionId", subscription)
            .option("ringRoot", ringRoot)
            .option("failOnDataLoss", failOnDataLoss);
        if (partitions != null)
        {
            reader = reader.option("numPartitions", partitions);
        }
        final Dataset<Row> messages = reader.load();
        final Dataset<Row> rows = hostColumn ?
            messages.select(col("message_id"), crc32(col("data")).as("crc"), length(col("data")).as("len"),
                call_function("reflect", lit("java.lang.System"), lit("getenv"), lit("SPARK_LOCAL_IP")).as("host")) :
            messages.select(col("message_id"), crc32(col("data")).as("crc"), length(col("data")).as("len"));
        final StreamingQuery query = rows.writeStream()
            .queryName("pubsub_shm_cluster")
            .format("json")
            .option("path", out)
            .option("checkpointLocation", checkpoint)
            .trigger(Trigger.ProcessingTime(trigger))
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
            fail(ex);
        }
        if (query.exception().isDefined())
        {
            fail(query.exception().get());
        }
        spark.stop();
        say("stopped canary=" + canary.length());
        System.exit(0);
    }

    /** Waits until n executors registered, and says which hosts they are on. */
    private static void waitForExecutors(final SparkContext sc, final int n) throws InterruptedException
    {
        final long deadline = System.nanoTime() + 180_000_000_000L;
        final String driverId = "driver";
        if (n == 0)
        {
            say("executors 0 (" + sc.master() + ")");
            return;
        }
        while (true)
        {
            final List<String> hosts = new ArrayList<>();
            for (final var info : sc.statusTracker().getExecutorInfos())
            {
                hosts.add(info.host());
            }
            // getExecutorInfos includes the driver's own entry.
            if (hosts.size() - 1 >= n)
            {
                final TreeSet<String> names = new TreeSet<>(hosts);
                say("executors " + (hosts.size() - 1) + " " + String.join(",", names) + " (" + driverId + " included in hosts)");
                return;
            }
            if (System.nanoTime() > deadline)
            {
                throw new IllegalStateException("ClusterQuery: only " + (hosts.size() - 1) + " of " + n +
                    " executors registered within 180 s");
            }
            Thread.sleep(200);
        }
    }

    private static void fail(final Throwable t)
    {
        say("query failed: " + ChaosQuery.oneLine(t));
        System.out.flush();
        Runtime.getRuntime().halt(3);
    }

    private static synchronized void say(final String line)
    {
        System.out.println("cluster: " + line);
        System.out.flush();
    }
}
