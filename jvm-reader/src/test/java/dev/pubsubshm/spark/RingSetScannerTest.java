package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import dev.pubsubshm.ring.PeerState;
import dev.pubsubshm.ring.ProcessIdentity;
import dev.pubsubshm.ring.RingFile;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RingSetScannerTest
{
    private Path root;
    private JavaRingSet set;

    @BeforeEach
    void setUp()
    {
        root = Ringgen.newRoot("pubsub-shm-scanner-test-");
        set = new JavaRingSet(root.resolve("p.s"), 2, 4096);
    }

    @AfterEach
    void tearDown()
    {
        set.close();
        RingRegistry.get().detachIdle();
        Ringgen.deleteTree(root);
    }

    @Test
    void viewsHoldEveryBatchFromHeadToTailIncrementally()
    {
        set.write(0, 10);
        set.write(0, 20);
        set.write(0, 30);
        try (RingSetScanner scanner = new RingSetScanner(set.dir, "host-a"))
        {
            List<RingView> views = scanner.scan();
            assertEquals(2, views.size());
            final RingView v0 = views.get(0);
            assertEquals("host-a", v0.host());
            assertEquals(0, v0.partition());
            assertEquals(set.ring(0).instanceId(), v0.instanceId());
            assertEquals(set.path(0).toString(), v0.path());
            assertEquals(1, v0.firstBatchId());
            assertEquals(3, v0.lastBatchId());
            assertEquals(3, v0.unackedRows(), "a RAW record counts its row_count (1)");
            assertEquals(60, v0.unackedBytes());
            assertEquals(List.of(10L, 20L, 30L), List.of(v0.bytes(1), v0.bytes(2), v0.bytes(3)));
            assertEquals(0, v0.position(1));
            assertEquals(128, v0.position(2), "64-byte header + 10 bytes, aligned to 64");
            assertEquals(0, views.get(1).firstBatchId(), "an empty ring");
            assertEquals(0, views.get(1).lastBatchId());

            assertEquals(2, RingCommitter.commit(set.path(0), v0.instanceId(), 2));
            set.write(0, 40);
            views = scanner.scan();
            final RingView again = views.get(0);
            assertEquals(3, again.firstBatchId(), "committed batches left the view");
            assertEquals(4, again.lastBatchId());
            assertEquals(70, again.unackedBytes());
            assertFalse(again.hasDetail(2));
            assertEquals(40, again.bytes(4));
        }
    }

    @Test
    void aRecreatedRingShowsAsANewIncarnation()
    {
        set.write(1, 10);
        try (RingSetScanner scanner = new RingSetScanner(set.dir, "h"))
        {
            final long before = scanner.scan().get(1).instanceId();
            set.recreate(1, 4096);
            set.write(1, 10);
            set.write(1, 10);
            final RingView after = scanner.scan().get(1);
            assertNotEquals(before, after.instanceId());
            assertEquals(set.ring(1).instanceId(), after.instanceId());
            assertEquals(1, after.firstBatchId());
            assertEquals(2, after.lastBatchId());
        }
    }

    @Test
    void scanningAttachesAsTheHeartBeatingConsumerAndDetachesCleanly() throws Exception
    {
        final RingFile ring = set.ring(0);
        try (RingSetScanner scanner = new RingSetScanner(set.dir, "h"))
        {
            scanner.scan();
            assertEquals(ProcessIdentity.self().pid(), ring.peerPid(RingFile.Side.CONSUMER));
            final long beat = ring.getLongAcquire(dev.pubsubshm.ring.RingDescriptor.CONSUMER_HEARTBEAT_NS_OFFSET);
            Thread.sleep(3 * RingRegistry.HEARTBEAT_INTERVAL_MS);
            assertTrue(ring.getLongAcquire(dev.pubsubshm.ring.RingDescriptor.CONSUMER_HEARTBEAT_NS_OFFSET) > beat,
                "the registry's timer heart-beats the ring");
            assertEquals(PeerState.ALIVE, ring.peerState(RingFile.Side.CONSUMER, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS,
                System.nanoTime()));
        }
        RingRegistry.get().detachIdle();
        assertEquals(PeerState.CLOSED, ring.peerState(RingFile.Side.CONSUMER, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS,
            System.nanoTime()), "a clean detach: pullerd keeps the uncommitted batches leased");
    }

    @Test
    void aGoneRingSetHasNoViews()
    {
        try (RingSetScanner scanner = new RingSetScanner(root.resolve("missing.set"), "h"))
        {
            assertTrue(scanner.scan().isEmpty());
            assertFalse(RingSetScanner.isRingSet(root.resolve("missing.set")));
            assertTrue(RingSetScanner.isRingSet(set.dir));
        }
    }
}
