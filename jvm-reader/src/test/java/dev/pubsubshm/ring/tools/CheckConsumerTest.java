package dev.pubsubshm.ring.tools;

import dev.pubsubshm.ring.ProcessIdentity;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.TestRingsAccess;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.ByteArrayOutputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import java.util.zip.CRC32C;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

class CheckConsumerTest
{
    @TempDir
    Path dir;

    /** A body per the CheckConsumer contract: CRC32C trailer from 4 bytes on, else a pattern. */
    static byte[] body(final int length, final long batchId)
    {
        final byte[] b = new byte[length];
        if (length < 4)
        {
            for (int i = 0; i < length; i++)
            {
                b[i] = (byte)(batchId + i);
            }
            return b;
        }
        for (int i = 0; i < length - 4; i++)
        {
            b[i] = (byte)(batchId * 7 + i * 13);
        }
        final CRC32C crc = new CRC32C();
        crc.update(b, 0, length - 4);
        ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).putInt(length - 4, (int)crc.getValue());
        return b;
    }

    private static int size(final int i)
    {
        return (i * 7919) % 3000;
    }

    private static final class Run
    {
        final ByteArrayOutputStream out = new ByteArrayOutputStream();
        final ByteArrayOutputStream err = new ByteArrayOutputStream();
        int status;

        String out()
        {
            return out.toString(StandardCharsets.UTF_8).trim();
        }

        String err()
        {
            return err.toString(StandardCharsets.UTF_8);
        }
    }

    private static Run run(final String... args)
    {
        final Run run = new Run();
        run.status = CheckConsumer.run(CheckConsumer.Options.parse(args),
            new PrintStream(run.out, true, StandardCharsets.UTF_8), new PrintStream(run.err, true, StandardCharsets.UTF_8));
        return run;
    }

    /** Produces {@code n} records from another thread, waiting whenever the ring is full. */
    private CompletableFuture<Long> produce(final Path ringPath, final int n, final int corruptIndex)
    {
        return CompletableFuture.supplyAsync(() ->
        {
            long bytes = 0;
            try (RingFile ring = RingFile.open(ringPath); TestRingsAccess.Producer producer = TestRingsAccess.producer(ring))
            {
                for (int i = 0; i < n; i++)
                {
                    final byte[] b = body(size(i), producer.nextBatchId());
                    if (i == corruptIndex)
                    {
                        b[0] ^= 1;
                    }
                    final long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(20);
                    while (!producer.tryWriteRaw(b))
                    {
                        if (System.nanoTime() > deadline)
                        {
                            throw new IllegalStateException("consumer stopped releasing at record " + i);
                        }
                        producer.heartbeat();
                        Thread.yield();
                    }
                    bytes += b.length;
                }
            }
            return bytes;
        });
    }

    @Test
    void consumesChecksReleasesAndCommitsEveryRecord() throws Exception
    {
        final Path data = TestRingsAccess.createData(dir, 2, 1 << 16);
        final Path commit = TestRingsAccess.createCommit(dir, 4096);
        final CompletableFuture<Long> producer = produce(data, 5000, -1);
        final Run run = run("--dir", dir.toString(), "--partition", "2", "--records", "5000", "--commit-every", "1000",
            "--timeout-s", "60");
        final long bytes = producer.get(60, TimeUnit.SECONDS);
        assertEquals(0, run.status, run.err());
        assertEquals("{\"records\":5000,\"bytes\":" + bytes + ",\"checksum_failures\":0,\"first_batch_id\":1,\"last_batch_id\":5000}",
            run.out());
        assertEquals("", run.err());

        try (RingFile dataRing = RingFile.open(data); RingFile commitRing = RingFile.open(commit))
        {
            assertEquals(dataRing.tailPosition(), dataRing.headPosition(), "every record released");
            assertEquals(1, dataRing.getLong(CONSUMER_CLOSED_OFFSET));
            final List<long[]> ranges = new ArrayList<>();
            for (long p = 0; p < commitRing.tailPosition(); p += COMMIT_RECORD_LENGTH)
            {
                final int off = commitRing.offsetOf(p);
                assertEquals(COMMIT_RECORD_LENGTH, commitRing.getInt(off + COMMIT_LENGTH_OFFSET));
                assertEquals(COMMIT_TYPE_COMMIT, commitRing.getInt(off + COMMIT_TYPE_OFFSET));
                assertEquals(2, commitRing.getInt(off + COMMIT_PARTITION_OFFSET));
                assertEquals(dataRing.instanceId(), commitRing.getLong(off + COMMIT_DATA_RING_INSTANCE_ID_OFFSET));
                assertEquals(ProcessIdentity.self().pid(), commitRing.getInt(off + COMMIT_PRODUCER_PID_OFFSET));
                ranges.add(new long[] {commitRing.getLong(off + COMMIT_FIRST_BATCH_ID_OFFSET),
                    commitRing.getLong(off + COMMIT_LAST_BATCH_ID_OFFSET)});
            }
            assertEquals(5, ranges.size());
            for (int i = 0; i < 5; i++)
            {
                assertArrayEquals(new long[] {i * 1000L + 1, (i + 1) * 1000L}, ranges.get(i));
            }
        }
    }

    @Test
    void aPartialLastCommitCoversTheRemainder() throws Exception
    {
        TestRingsAccess.createData(dir, 0, 1 << 16);
        final Path commit = TestRingsAccess.createCommit(dir, 4096);
        final CompletableFuture<Long> producer = produce(dir.resolve("data-0.ring"), 25, -1);
        final Run run = run("--dir", dir.toString(), "--partition", "0", "--records", "25", "--commit-every", "10");
        producer.get(60, TimeUnit.SECONDS);
        assertEquals(0, run.status, run.err());
        try (RingFile commitRing = RingFile.open(commit))
        {
            assertEquals(3 * COMMIT_RECORD_LENGTH, commitRing.tailPosition());
            final int last = commitRing.offsetOf(128);
            assertEquals(21, commitRing.getLong(last + COMMIT_FIRST_BATCH_ID_OFFSET));
            assertEquals(25, commitRing.getLong(last + COMMIT_LAST_BATCH_ID_OFFSET));
        }
    }

    @Test
    void aCorruptPayloadIsCountedAndFailsTheRun() throws Exception
    {
        TestRingsAccess.createData(dir, 0, 1 << 16);
        TestRingsAccess.createCommit(dir, 4096);
        final CompletableFuture<Long> producer = produce(dir.resolve("data-0.ring"), 100, 42);
        final Run run = run("--dir", dir.toString(), "--partition", "0", "--records", "100");
        producer.get(60, TimeUnit.SECONDS);
        assertEquals(1, run.status);
        assertTrue(run.out().contains("\"checksum_failures\":1"), run.out());
        assertTrue(run.err().contains("batch_id=43"), run.err());
    }

    @Test
    void shortBodiesCarryAPatternEveryByteOfWhichIsChecked() throws Exception
    {
        TestRingsAccess.createData(dir, 0, 1 << 16);
        TestRingsAccess.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(dir.resolve("data-0.ring"));
             TestRingsAccess.Producer producer = TestRingsAccess.producer(ring))
        {
            assertTrue(producer.tryWriteRaw(new byte[0]));
            assertTrue(producer.tryWriteRaw(new byte[] {2}));
            assertTrue(producer.tryWriteRaw(new byte[] {3, 4, 5}));
            assertTrue(producer.tryWriteRaw(new byte[] {4, 5, 7})); // last byte wrong
        }
        final Run run = run("--dir", dir.toString(), "--partition", "0", "--records", "4");
        assertEquals(1, run.status);
        assertTrue(run.out().contains("\"records\":4,\"bytes\":7,\"checksum_failures\":1"), run.out());
        assertTrue(run.err().contains("batch_id=4"), run.err());
    }

    @Test
    void runningOutOfRecordsEndsWithAnErrorNamingTheCount()
    {
        TestRingsAccess.createData(dir, 0, 1 << 16);
        TestRingsAccess.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(dir.resolve("data-0.ring"));
             TestRingsAccess.Producer producer = TestRingsAccess.producer(ring))
        {
            assertTrue(producer.tryWriteRaw(body(10, 1)));
        } // closing the producer ends the stream
        final IllegalStateException ex = assertThrows(IllegalStateException.class,
            () -> run("--dir", dir.toString(), "--partition", "0", "--records", "3", "--timeout-s", "10"));
        assertTrue(ex.getMessage().contains("closed the stream after 1 of 3 records"), ex.getMessage());
    }

    @Test
    void badArgumentsAreNamed()
    {
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CheckConsumer.Options.parse(new String[] {
            "--partition", "0", "--records", "1"})).getMessage().contains("--dir"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CheckConsumer.Options.parse(new String[] {
            "--dir", "/x", "--partition", "zero", "--records", "1"})).getMessage().contains("--partition=zero"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CheckConsumer.Options.parse(new String[] {
            "--dir", "/x", "--partition", "0", "--records", "0"})).getMessage().contains("--records=0"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CheckConsumer.Options.parse(new String[] {
            "--dir", "/x", "--partition", "0", "--records", "1", "--bogus", "1"})).getMessage().contains("--bogus"));
        assertTrue(assertThrows(IllegalArgumentException.class, () -> CheckConsumer.Options.parse(new String[] {
            "--dir"})).getMessage().contains("needs a value"));
        final CheckConsumer.Options o = CheckConsumer.Options.parse(new String[] {
            "--dir", "/x", "--partition", "3", "--records", "7"});
        assertEquals(1000, o.commitEvery());
        assertEquals(TimeUnit.SECONDS.toNanos(60), o.timeoutNs());
    }
}
