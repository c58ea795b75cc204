package dev.pubsubshm.spark;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.TimeUnit;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.spark.api.java.function.VoidFunction2;
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
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * The whole path with the real pieces: the project's Pub/Sub emulator, the sample publisher,
 * pullerd (started without a subscription: the source attaches it through pullerd's control
 * socket) and a Spark query in local mode. 100,000 published messages arrive exactly once,
 * none is acknowledged before its micro-batch committed, and every one is acknowledged in the
 * end (pullerd holds no unacknowledged message).
 */
class PullerdEndToEndTest
{
    private static final int MESSAGES = 100_000;

    private Path root;
    private final List<Process> processes = new ArrayList<>();

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-e2e-test-");
    }

    @AfterEach
    void tearDown() throws Exception
    {
        for (int i = processes.size() - 1; i >= 0; i--)
        {
            final Process p = processes.get(i);
            p.destroy(); // SIGTERM: pullerd acks what was committed, nacks the rest, removes its rings
            if (!p.waitFor(30, TimeUnit.SECONDS))
            {
                p.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        }
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    /** Builds the Go commands once into jvm-reader/target/e2e-bin. */
    private static synchronized Path binaries() throws Exception
    {
        final Path bin = Ringgen.repoRoot().resolve("jvm-reader/target/e2e-bin");
        final Process go = new ProcessBuilder("go", "build", "-o", bin + "/", "./pullerd", "./pullerd/cmd/pubsub-emulator",
            "./bench/cmd/publisher").directory(Ringgen.repoRoot().toFile()).redirectErrorStream(true).start();
        final String out = new String(go.getInputStream().readAllBytes(), StandardCharsets.UTF_8);
        if (!go.waitFor(5, TimeUnit.MINUTES) || go.exitValue() != 0)
        {
            throw new IllegalStateException("go build of pullerd, pubsub-emulator and publisher failed:\n" + out);
        }
        return bin;
    }

    private Process start(final String name, final String emulatorHost, final String... cmd) throws IOException
    {
        final ProcessBuilder pb = new ProcessBuilder(cmd).redirectErrorStream(true)
            .redirectOutput(root.resolve(name + ".log").toFile());
        if (emulatorHost != null)
        {
            pb.environment().put("PUBSUB_EMULATOR_HOST", emulatorHost);
        }
        final Process p = pb.start();
        processes.add(p);
        return p;
    }

    private static String await(final Path file, final String what) throws Exception
    {
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(file) || Files.size(file) == 0)
        {
            if (System.nanoTime() > deadline)
            {
                fail(what + " did not start within 30 s (no " + file + ")");
            }
            Thread.sleep(20);
        }
        return Files.readString(file).trim();
    }

    private JsonNode status(final Path socket) throws IOException
    {
        return PullerdClient.call(socket, "{\"op\":\"status\",\"project\":\"e2e-project\",\"subscription\":\"e2e-sub\"}",
            5000);
    }

    @Test
    @Timeout(180)
    void publishedMessagesArriveOnceAndAreAckedOnlyAfterTheirMicroBatchCommitted() throws Exception
    {
        final Path bin = binaries();
        final Path shm = root.resolve("rings");
        Files.createDirectory(shm, java.nio.file.attribute.PosixFilePermissions.asFileAttribute(
            java.nio.file.attribute.PosixFilePermissions.fromString("rwx------")));
        start("emulator", null, bin.resolve("pubsub-emulator").toString(), "-project", "e2e-project", "-topic", "e2e-topic",
            "-subscription", "e2e-sub=e2e-topic", "-addr", "127.0.0.1:0", "-addr-file", root.resolve("emulator.addr").toString(),
            "-log-level", "warn");
        final String host = await(root.resolve("emulator.addr"), "the emulator");
        final Process pullerd = start("pullerd", host, bin.resolve("pullerd").toString(), "-project", "e2e-project",
            "-shm-dir", shm.toString(), "-streams", "2", "-stagger", "0", "-log-level", "warn", "-log-format", "console");
        final Path control = shm.resolve("control.sock");
        final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!Files.exists(control))
        {
            assertTrue(pullerd.isAlive(), () -> "pullerd exited: " + log("pullerd"));
            assertTrue(System.nanoTime() < deadline, "pullerd did not open its control socket within 30 s");
            Thread.sleep(20);
        }
        final Process publisher = start("publisher", host, bin.resolve("publisher").toString(), "-project", "e2e-project",
            "-topic", "e2e-topic", "-rate", "0", "-size", "256", "-count", Integer.toString(MESSAGES));

        final SparkSession spark = SparkSession.builder().master("local[2,2]").appName("PullerdEndToEndTest")
            .config("spark.ui.enabled", "false").getOrCreate();
        final ConcurrentLinkedQueue<String> ids = new ConcurrentLinkedQueue<>();
        final CopyOnWriteArrayList<Throwable> sinkErrors = new CopyOnWriteArrayList<>();
        final Path set = shm.resolve("e2e-project.e2e-sub");
        final Path checkpoint = root.resolve("checkpoint");
        StreamingQuery q = null;
        try
        {
            // No ring set yet: load() asks pullerd to attach the subscription (2 partitions).
            q = spark.readStream().format("pubsub-shm")
                .option("projectId", "e2e-project").option("subscriptionId", "e2e-sub")
                .option("ringRoot", shm.toString()).option("numPartitions", "2")
                .load().select("message_id")
                .writeStream()
                .option("checkpointLocation", checkpoint.toString())
                .foreachBatch((VoidFunction2<Dataset<Row>, Long>)(df, batchId) ->
                {
                    try
                    {
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
                    }
                })
                .start();
            final long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(150);
            long unacked = -1;
            while (true)
            {
                if (q.exception().isDefined())
                {
                    throw new AssertionError("the query failed", q.exception().get());
                }
                if (ids.size() >= MESSAGES)
                {
                    unacked = status(set.resolve("control.sock")).path("ring_set").path("num_unacked_messages").asLong(-1);
                    if (unacked == 0)
                    {
                        break;
                    }
                }
                if (System.nanoTime() > until)
                {
                    fail("after 150 s: " + ids.size() + " of " + MESSAGES + " messages read, " + unacked + " unacked; " +
                        "publisher: " + log("publisher") + "\npullerd: " + log("pullerd"));
                }
                Thread.sleep(50);
            }
            assertTrue(publisher.waitFor(10, TimeUnit.SECONDS) && publisher.exitValue() == 0, () -> log("publisher"));
            assertTrue(sinkErrors.isEmpty(), () -> "acknowledged before the micro-batch committed: " + sinkErrors);
            final Set<String> distinct = new HashSet<>(ids);
            assertEquals(MESSAGES, ids.size(), "messages read (duplicates would mean a nack and a redelivery)");
            assertEquals(MESSAGES, distinct.size(), "distinct message ids");
            final JsonNode st = status(set.resolve("control.sock")).path("ring_set");
            assertEquals(0, st.path("num_unacked_messages").asLong(), "pullerd holds no unacknowledged message: " + st);
            assertEquals(2, st.path("partitions").size(), "the source asked for numPartitions=2: " + st);
        }
        finally
        {
            if (q != null)
            {
                q.stop();
                final StreamingQuery stopped = q;
                assertFalse(stopped.exception().isDefined(), () -> "query failed: " + stopped.exception());
            }
            spark.stop();
        }
        pullerd.destroy();
        assertTrue(pullerd.waitFor(30, TimeUnit.SECONDS), "pullerd stops on SIGTERM");
        assertFalse(Files.exists(set), "pullerd removed its ring set at shutdown");
    }

    private String log(final String name)
    {
        try
        {
            final File f = root.resolve(name + ".log").toFile();
            final String s = f.exists() ? Files.readString(f.toPath()) : "";
            return s.length() > 4000 ? s.substring(s.length() - 4000) : s;
        }
        catch (final IOException ex)
        {
            return "(" + ex + ")";
        }
    }
}
