package dev.pubsubshm.ring;

import dev.pubsubshm.ring.RingFormatException.Kind;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.BitSet;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

class CommitRingWriterTest
{
    private static final long INSTANCE = 0xAABBCCDDEEFF0011L;

    @TempDir
    Path dir;

    private static CommitRingWriter.Config fixed()
    {
        return CommitRingWriter.Config.defaults()
            .identity(new ProcessIdentity(4242, 777))
            .unixNanoClock(() -> 1_700_000_001_000_000_000L);
    }

    @Test
    void writesEveryFieldAtTheFormatOffsets()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); CommitRingWriter writer = new CommitRingWriter(ring, fixed()))
        {
            assertEquals(0, writer.commit(3, INSTANCE, 1, 10));
            assertEquals(64, writer.release(4, INSTANCE, 5, 5));
            assertEquals(128, writer.nack(5, INSTANCE, 7, 9));
            assertEquals(192, ring.tailPosition());
            assertEquals(0, ring.headPosition());

            final int off = ring.offsetOf(0);
            assertEquals(64, ring.getInt(off));
            assertEquals(COMMIT_TYPE_COMMIT, ring.getInt(off + 4));
            assertEquals(0, ring.getLong(off + 8));
            assertEquals(1, ring.getLong(off + 16));
            assertEquals(10, ring.getLong(off + 24));
            assertEquals(3, ring.getInt(off + 32));
            assertEquals(4242, ring.getInt(off + 36));
            assertEquals(INSTANCE, ring.getLong(off + 40));
            assertEquals(1_700_000_001_000_000_000L, ring.getLong(off + 48));
            assertEquals(0, ring.getLong(off + 56));

            final List<TestCommitConsumer.Commit> got = new ArrayList<>();
            assertEquals(3, new TestCommitConsumer(ring).drain(got::add));
            assertEquals(List.of(
                new TestCommitConsumer.Commit(0, COMMIT_TYPE_COMMIT, 1, 10, 3, 4242, INSTANCE, 1_700_000_001_000_000_000L),
                new TestCommitConsumer.Commit(64, COMMIT_TYPE_RELEASE, 5, 5, 4, 4242, INSTANCE, 1_700_000_001_000_000_000L),
                new TestCommitConsumer.Commit(128, COMMIT_TYPE_NACK, 7, 9, 5, 4242, INSTANCE, 1_700_000_001_000_000_000L)),
                got);

            assertEquals(4242, ring.getLong(PRODUCER_PID_OFFSET));
            assertEquals(777, ring.getLong(PRODUCER_START_TICKS_OFFSET));
            assertEquals(0, ring.getLong(PRODUCER_CLOSED_OFFSET));
            writer.close();
            assertEquals(1, ring.getLong(PRODUCER_CLOSED_OFFSET), "close marks the producer closed");
            assertEquals(Kind.CLOSED, assertThrows(RingFormatException.class, () -> writer.commit(0, INSTANCE, 1, 1)).kind());
        }
    }

    @Test
    void refusesValuesThatBreakTheFormat()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); CommitRingWriter writer = new CommitRingWriter(ring))
        {
            IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> writer.commit(0, INSTANCE, 0, 5));
            assertTrue(ex.getMessage().contains("first_batch_id=0 last_batch_id=5"), ex.getMessage());
            ex = assertThrows(IllegalArgumentException.class, () -> writer.commit(0, INSTANCE, 6, 5));
            assertTrue(ex.getMessage().contains("first_batch_id=6"), ex.getMessage());
            ex = assertThrows(IllegalArgumentException.class, () -> writer.commit(-1, INSTANCE, 1, 1));
            assertTrue(ex.getMessage().contains("partition=-1"), ex.getMessage());
            ex = assertThrows(IllegalArgumentException.class, () -> writer.commit(0, 0, 1, 1));
            assertTrue(ex.getMessage().contains("data_ring_instance_id=0"), ex.getMessage());
            ex = assertThrows(IllegalArgumentException.class, () -> writer.write(COMMIT_TYPE_PADDING, 0, INSTANCE, 1, 1, 0));
            assertTrue(ex.getMessage().contains("type=4"), ex.getMessage());
            assertEquals(0, ring.tailPosition(), "nothing was claimed");
        }
        final Path data = TestRings.createData(dir, 0, 4096);
        try (RingFile ring = RingFile.open(data))
        {
            assertThrows(IllegalArgumentException.class, () -> new CommitRingWriter(ring));
        }
    }

    @Test
    void aFullRingFailsAtOnceOrAfterTheTimeout()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); CommitRingWriter writer = new CommitRingWriter(ring,
            fixed().fullTimeout(100, TimeUnit.MILLISECONDS)))
        {
            for (int i = 0; i < 64; i++)
            {
                writer.commit(0, INSTANCE, i + 1, i + 1);
            }
            RingFormatException ex = assertThrows(RingFormatException.class,
                () -> writer.write(COMMIT_TYPE_COMMIT, 0, INSTANCE, 65, 65, 0));
            assertEquals(Kind.FULL, ex.kind());
            assertTrue(ex.getMessage().contains("tail_position=4096 head_position=0 capacity=4096"), ex.getMessage());
            assertTrue(ex.getMessage().contains("consumer pid=0"), ex.getMessage());

            final long start = System.nanoTime();
            ex = assertThrows(RingFormatException.class, () -> writer.commit(0, INSTANCE, 65, 65));
            assertEquals(Kind.FULL, ex.kind());
            assertTrue(System.nanoTime() - start >= TimeUnit.MILLISECONDS.toNanos(100), "waited for the consumer");
            assertEquals(4096, ring.tailPosition(), "a failed write claims nothing");
        }
    }

    @Test
    void aFullRingWaitsForTheConsumer() throws Exception
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); RingFile consumerRing = RingFile.open(path);
             CommitRingWriter writer = new CommitRingWriter(ring, fixed().fullTimeout(10, TimeUnit.SECONDS)))
        {
            for (int i = 0; i < 64; i++)
            {
                writer.commit(0, INSTANCE, i + 1, i + 1);
            }
            final CompletableFuture<Integer> consumer = CompletableFuture.supplyAsync(() ->
            {
                sleep(50);
                return new TestCommitConsumer(consumerRing).drain(c -> { });
            });
            assertEquals(4096, writer.commit(0, INSTANCE, 65, 65));
            final int drained = consumer.get(10, TimeUnit.SECONDS);
            assertTrue(drained == 64 || drained == 65, "the 64 old records, and the new one if it was in time: " + drained);
        }
    }

    @Test
    void aSlotRecycledBeforeItsLengthIsClaimedIsGivenBack()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); RingFile consumerRing = RingFile.open(path))
        {
            final AtomicBoolean once = new AtomicBoolean();
            final CommitRingWriter.WriteHook stall = new CommitRingWriter.WriteHook()
            {
                @Override
                public void afterTailClaim(final long position)
                {
                    if (once.compareAndSet(false, true))
                    {
                        assertTrue(TestCommitConsumer.abandon(consumerRing, position, 0));
                    }
                }
            };
            try (CommitRingWriter writer = new CommitRingWriter(ring, fixed().hook(stall)))
            {
                assertEquals(64, writer.commit(1, INSTANCE, 1, 2), "slot 0 was recycled; the record went to slot 64");
            }
            assertEquals(0, ring.getInt(ring.offsetOf(0) + COMMIT_LENGTH_OFFSET), "the recycled slot was given back");
            final List<TestCommitConsumer.Commit> got = new ArrayList<>();
            assertEquals(1, new TestCommitConsumer(consumerRing).drain(got::add));
            assertEquals(1, got.size());
            assertEquals(64, got.get(0).position());
            assertEquals(2, got.get(0).last());
        }
    }

    @Test
    void aSlotAbandonedWhileBeingWrittenIsWrittenAgain()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        try (RingFile ring = RingFile.open(path); RingFile consumerRing = RingFile.open(path))
        {
            final AtomicBoolean once = new AtomicBoolean();
            final CommitRingWriter.WriteHook stall = new CommitRingWriter.WriteHook()
            {
                @Override
                public void beforePublish(final long position)
                {
                    if (once.compareAndSet(false, true))
                    {
                        assertTrue(TestCommitConsumer.abandon(consumerRing, position, COMMIT_LENGTH_CLAIMED));
                    }
                }
            };
            try (CommitRingWriter writer = new CommitRingWriter(ring, fixed().hook(stall)))
            {
                assertEquals(64, writer.nack(2, INSTANCE, 7, 9));
            }
            assertEquals(0, ring.getInt(ring.offsetOf(0) + COMMIT_LENGTH_OFFSET), "slot 0 stays recycled");
            assertEquals(0, ring.getInt(ring.offsetOf(0) + COMMIT_TYPE_OFFSET));
            final List<TestCommitConsumer.Commit> got = new ArrayList<>();
            new TestCommitConsumer(consumerRing).drain(got::add);
            assertEquals(List.of(new TestCommitConsumer.Commit(64, COMMIT_TYPE_NACK, 7, 9, 2, 4242, INSTANCE,
                1_700_000_001_000_000_000L)), got);
        }
    }

    @Test
    void manyThreadsWriteEveryRecordExactlyOnce() throws Exception
    {
        final int threads = 4;
        final int perThread = 10_000;
        final Path path = TestRings.createCommit(dir, 4096); // 64 slots: constant back-pressure
        final ExecutorService pool = Executors.newFixedThreadPool(threads + 1);
        try (RingFile ring = RingFile.open(path); RingFile consumerRing = RingFile.open(path);
             CommitRingWriter writer = new CommitRingWriter(ring, CommitRingWriter.Config.defaults()
                 .fullTimeout(30, TimeUnit.SECONDS)))
        {
            final BitSet[] seen = new BitSet[threads];
            for (int t = 0; t < threads; t++)
            {
                seen[t] = new BitSet(perThread + 1);
            }
            final int[] duplicates = new int[1];
            final AtomicBoolean producing = new AtomicBoolean(true);
            final Future<Integer> consumer = pool.submit(() ->
            {
                final TestCommitConsumer c = new TestCommitConsumer(consumerRing);
                final IdleStrategy idle = new BackoffIdleStrategy();
                int total = 0;
                while (producing.get() || consumerRing.headPosition() < consumerRing.tailPosition())
                {
                    final int n = c.drain(rec ->
                    {
                        assertEquals(rec.first(), rec.last());
                        assertEquals(INSTANCE, rec.instance());
                        if (seen[rec.partition()].get((int)rec.first()))
                        {
                            duplicates[0]++;
                        }
                        seen[rec.partition()].set((int)rec.first());
                    });
                    total += n;
                    idle.idle(n);
                }
                return total;
            });
            final CountDownLatch start = new CountDownLatch(1);
            final List<Future<?>> producers = new ArrayList<>();
            for (int t = 0; t < threads; t++)
            {
                final int partition = t;
                producers.add(pool.submit(() ->
                {
                    start.await();
                    for (int i = 1; i <= perThread; i++)
                    {
                        writer.commit(partition, INSTANCE, i, i);
                    }
                    return null;
                }));
            }
            start.countDown();
            for (final Future<?> f : producers)
            {
                f.get(60, TimeUnit.SECONDS);
            }
            producing.set(false);
            assertEquals(threads * perThread, consumer.get(60, TimeUnit.SECONDS));
            assertEquals(0, duplicates[0]);
            for (int t = 0; t < threads; t++)
            {
                assertEquals(perThread, seen[t].cardinality(), "partition " + t);
                assertEquals(1, seen[t].nextSetBit(0));
            }
            assertEquals((long)threads * perThread * 64, ring.tailPosition());
            assertEquals(ring.tailPosition(), ring.headPosition());
        }
        finally
        {
            pool.shutdownNow();
        }
    }

    @Test
    void heartbeatStampsTheProducerBlock()
    {
        final Path path = TestRings.createCommit(dir, 4096);
        final long[] clock = {1_000};
        try (RingFile ring = RingFile.open(path);
             CommitRingWriter writer = new CommitRingWriter(ring, fixed().nanoClock(() -> clock[0])))
        {
            assertEquals(1_000, ring.getLong(PRODUCER_HEARTBEAT_NS_OFFSET));
            clock[0] = 5_000;
            writer.heartbeat();
            assertEquals(5_000, ring.getLong(PRODUCER_HEARTBEAT_NS_OFFSET));
            clock[0] = 5_000 + RingFile.HEARTBEAT_INTERVAL_NS;
            writer.commit(0, INSTANCE, 1, 1);
            assertEquals(clock[0], ring.getLong(PRODUCER_HEARTBEAT_NS_OFFSET), "writes stamp the heartbeat");
        }
    }

    private static void sleep(final long ms)
    {
        try
        {
            Thread.sleep(ms);
        }
        catch (final InterruptedException ex)
        {
            Thread.currentThread().interrupt();
            throw new IllegalStateException(ex);
        }
    }
}
