package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** The reader's failures: each names the ring, the batches and what to do (reading itself is tested in Spark). */
class RingPartitionReaderTest
{
    private Path root;
    private JavaRingSet set;

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-reader-test-");
        set = new JavaRingSet(root.resolve("p.s"), 1, 4096);
        for (int i = 0; i < 4; i++)
        {
            set.write(0, 32);
        }
    }

    @AfterEach
    void tearDown()
    {
        set.close();
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    private static RingPartitionReader reader(final Path ring, final long instance, final long from, final long to,
        final boolean failOnDataLoss)
    {
        return new RingPartitionReader(new RingInputPartition("host-a",
            List.of(new RingInputPartition.Slice(ring.toString(), 0, instance, from, to, -1))), true, failOnDataLoss);
    }

    @Test
    void aRecreatedRingFailsTheTaskOrIsSkipped()
    {
        final long old = set.ring(0).instanceId();
        set.recreate(0, 4096);
        try (RingPartitionReader r = reader(set.path(0), old, 0, 4, true))
        {
            final IllegalStateException ex = assertThrows(IllegalStateException.class, r::next);
            assertTrue(ex.getMessage().contains("was recreated: it is instance " + RingRegistry.hex(set.ring(0).instanceId()) +
                " now, not " + RingRegistry.hex(old)), ex.getMessage());
            assertTrue(ex.getMessage().contains("batches 1..4") && ex.getMessage().contains("planned on host-a"),
                ex.getMessage());
            assertTrue(ex.getMessage().contains("failOnDataLoss=false"), ex.getMessage());
        }
        try (RingPartitionReader r = reader(set.path(0), old, 0, 4, false))
        {
            assertFalse(r.next(), "skipped: pullerd nacked those batches, Pub/Sub redelivers them");
        }
    }

    @Test
    void aRingNotOnThisHostFailsTheTaskSoThatSparkRetriesIt()
    {
        try (RingPartitionReader r = reader(root.resolve("p.s/data-9.ring"), 77, 0, 1, false))
        {
            final IllegalStateException ex = assertThrows(IllegalStateException.class, r::next);
            assertTrue(ex.getMessage().contains("no ring file \"" + root.resolve("p.s/data-9.ring") + "\" on this host"),
                ex.getMessage());
            assertTrue(ex.getMessage().contains("Spark retries it there"), ex.getMessage());
        }
    }

    @Test
    void batchesReleasedAfterPlanningAreReported()
    {
        final long id = set.ring(0).instanceId();
        assertEquals(2, RingCommitter.commit(set.path(0), id, 2));
        try (RingPartitionReader r = reader(set.path(0), id, 0, 3, true))
        {
            final IllegalStateException ex = assertThrows(IllegalStateException.class, r::next);
            assertTrue(ex.getMessage().contains("batches 1..2 are no longer in the ring (it starts at batch 3)"),
                ex.getMessage());
        }
        try (RingPartitionReader r = reader(set.path(0), id, 0, 3, false))
        {
            assertFalse(r.next());
        }
        assertEquals(0, r0Pins(id), "a failed or skipped slice leaves no pin behind");
    }

    /** Commits everything: the head reaches the tail only if no pin holds it. */
    private int r0Pins(final long id)
    {
        RingCommitter.commit(set.path(0), id, 4);
        return set.ring(0).headPosition() == set.ring(0).tailPosition() ? 0 : 1;
    }
}
