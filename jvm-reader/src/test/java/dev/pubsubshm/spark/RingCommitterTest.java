package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingScanner;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RingCommitterTest
{
    private Path root;
    private JavaRingSet set;

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-committer-test-");
        set = new JavaRingSet(root.resolve("p.s"), 2, 4096);
    }

    @AfterEach
    void tearDown()
    {
        set.close();
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    private static long positionOf(final RingFile ring, final long batchId)
    {
        try (DataRingScanner s = new DataRingScanner(ring))
        {
            final DataRecord r = new DataRecord();
            while (s.next(r) == DataRingScanner.Status.RECORD)
            {
                if (r.batchId() == batchId)
                {
                    return r.position();
                }
            }
        }
        throw new AssertionError("batch " + batchId + " not in the ring");
    }

    @Test
    void commitsEachBatchOnceReleasesItAndAdvancesTheHead()
    {
        for (int i = 0; i < 5; i++)
        {
            set.write(0, 100);
        }
        final RingFile ring = set.ring(0);
        final long pos4 = positionOf(ring, 4);
        assertEquals(3, RingCommitter.commit(set.path(0), ring.instanceId(), 3));
        assertEquals(List.of(new JavaRingSet.Commit(RingDescriptor.COMMIT_TYPE_COMMIT, 0, ring.instanceId(), 1, 3)),
            set.commits());
        assertEquals(pos4, ring.headPosition(), "head moves over the committed batches, stops at batch 4");
        assertEquals(0, RingCommitter.commit(set.path(0), ring.instanceId(), 3), "already committed");
        assertEquals(0, RingCommitter.commit(set.path(0), ring.instanceId(), 2), "already committed");
        assertEquals(2, RingCommitter.commit(set.path(0), ring.instanceId(), 9), "up to the last batch in the ring");
        assertEquals(List.of(1L, 2L, 3L, 4L, 5L), set.committedBatches(0));
        assertEquals(ring.tailPosition(), ring.headPosition());
        assertTrue(set.committedBatches(1).isEmpty(), "the other ring is untouched");
    }

    @Test
    void aBatchAnotherProcessReleasedIsNotCommittedTwice()
    {
        for (int i = 0; i < 4; i++)
        {
            set.write(0, 64);
        }
        final RingFile ring = set.ring(0);
        // Another JVM committed batch 2 and claimed its RELEASED bit (its head advance stopped at batch 1).
        ring.getAndBitwiseOrInt(ring.offsetOf(positionOf(ring, 2)) + RingDescriptor.RECORD_STATE_OFFSET,
            RingDescriptor.STATE_RELEASED);
        assertEquals(3, RingCommitter.commit(set.path(0), ring.instanceId(), 4));
        assertEquals(List.of(
                new JavaRingSet.Commit(RingDescriptor.COMMIT_TYPE_COMMIT, 0, ring.instanceId(), 1, 1),
                new JavaRingSet.Commit(RingDescriptor.COMMIT_TYPE_COMMIT, 0, ring.instanceId(), 3, 4)),
            set.commits());
        assertEquals(ring.tailPosition(), ring.headPosition());
    }

    @Test
    void aPinnedPositionHoldsTheHeadUntilItIsUnpinned()
    {
        for (int i = 0; i < 4; i++)
        {
            set.write(0, 64);
        }
        final RingFile ring = set.ring(0);
        final long pos2 = positionOf(ring, 2);
        try (RingRegistry.Handle h = RingRegistry.get().acquire(set.path(0), ring.instanceId()))
        {
            assertTrue(h.pin(pos2));
            assertEquals(4, RingCommitter.commit(set.path(0), ring.instanceId(), 4), "the commit records are written");
            assertEquals(List.of(1L, 2L, 3L, 4L), set.committedBatches(0));
            assertEquals(pos2, ring.headPosition(), "but the head stops at the pinned record");
            h.unpin(pos2);
            RingCommitter.advanceHead(h);
            assertEquals(ring.tailPosition(), ring.headPosition());
            assertTrue(!h.pin(pos2), "a position below the head cannot be pinned");
        }
    }

    @Test
    void aRecreatedRingIsLeftAlone()
    {
        set.write(0, 64);
        final long old = set.ring(0).instanceId();
        set.recreate(0, 4096);
        set.write(0, 64);
        assertEquals(0, RingCommitter.commit(set.path(0), old, 1), "batches of the old incarnation are pullerd's to nack");
        assertTrue(set.commits().isEmpty());
        assertEquals(0, set.ring(0).headPosition());
    }

    @Test
    void committedSpaceIsReusedAcrossTheWrap()
    {
        final RingFile ring = set.ring(0);
        long committed = 0;
        for (int round = 0; round < 20; round++)
        {
            long last = 0;
            for (int i = 0; i < 5; i++)
            {
                last = set.write(0, 300 + 37 * i); // 4096-byte ring: wraps with PADDING every few rounds
            }
            assertEquals(last - committed, RingCommitter.commit(set.path(0), ring.instanceId(), last));
            committed = last;
        }
        assertEquals(100, set.committedBatches(0).size());
        assertEquals(ring.tailPosition(), ring.headPosition());
        assertTrue(ring.tailPosition() > 8 * ring.capacity(), "the ring wrapped");
    }
}
