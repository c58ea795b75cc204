package dev.pubsubshm.arrow;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.function.LongConsumer;

import com.fasterxml.jackson.databind.JsonNode;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;

import static dev.pubsubshm.ring.RingDescriptor.KIND_DATA;
import static dev.pubsubshm.ring.RingDescriptor.RECORD_STATE_OFFSET;
import static dev.pubsubshm.ring.RingDescriptor.STATE_RELEASED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The release contract of {@link RingBatchLoader}: a record goes back to the ring
 * ({@code onRelease}, here {@link DataRingReader#release}) exactly once, when the last buffer
 * pointing into it is released, in whatever order the owners let go; head passes only the
 * contiguous released run; nothing leaks (allocators at zero) and the mapping outlives every
 * buffer, also across the loader's, the reader's and the ring owner's close.
 */
class RingBatchLoaderReleaseTest
{
    @TempDir
    Path dir;

    private RingFile ring;
    private RootAllocator allocator;
    private BufferAllocator holders;
    private DataRingReader reader;
    private RingBatchLoader loader;
    /** Positions passed to onRelease, in call order. */
    private final List<Long> released = Collections.synchronizedList(new ArrayList<>());
    private LongConsumer onRelease;
    private List<JsonNode> jsonl;

    @BeforeEach
    void open() throws Exception
    {
        jsonl = GoldenArrowRingTest.expectedRows();
        ring = RingFile.open(ArrowRings.copyGolden(dir), RingFile.OpenOptions.defaults().kind(KIND_DATA));
        allocator = new RootAllocator();
        holders = allocator.newChildAllocator("holders", 0, Long.MAX_VALUE);
        reader = new DataRingReader(ring);
        loader = new RingBatchLoader(ring, allocator, true);
        onRelease = position ->
        {
            released.add(position);
            reader.release(position);
        };
    }

    @AfterEach
    void close()
    {
        // Idempotent closes; a test that left something open fails here.
        loader.close();
        reader.close();
        ring.close();
        assertEquals(0, holders.getAllocatedMemory(), "holders' allocator at zero");
        holders.close();
        assertEquals(0, allocator.getAllocatedMemory(), "root allocator at zero");
        allocator.close();
    }

    private DataRecord pollAndLoad()
    {
        final DataRecord r = new DataRecord();
        assertTrue(reader.poll(r), "a record to poll");
        loader.load(r, onRelease);
        return r;
    }

    /** Moves the loader root's vectors into a new root on {@code to} (another owner). */
    private VectorSchemaRoot transferOut(final BufferAllocator to)
    {
        final VectorSchemaRoot from = loader.root();
        final VectorSchemaRoot holder = VectorSchemaRoot.create(loader.schema(), to);
        for (int i = 0; i < from.getFieldVectors().size(); i++)
        {
            from.getVector(i).makeTransferPair(holder.getVector(i)).transfer();
        }
        holder.setRowCount(from.getRowCount());
        from.setRowCount(0);
        return holder;
    }

    private boolean releasedBit(final long position)
    {
        return (ring.getIntVolatile(ring.offsetOf(position) + RECORD_STATE_OFFSET) & STATE_RELEASED) != 0;
    }

    @Test
    void outOfOrderReleasesCallOnReleaseOnceEachInLastBufferOrderAndHeadPassesOnlyTheContiguousRun()
    {
        final long head0 = ring.headPosition();
        final DataRecord a = pollAndLoad();
        final long posA = a.position(), bodyA = a.bodyLength();
        final VectorSchemaRoot holdA = transferOut(holders);
        assertEquals(0, loader.allocator().getAllocatedMemory(), "A's bytes moved to the holder");
        assertEquals(bodyA, holders.getAllocatedMemory());
        final DataRecord b = pollAndLoad();
        final long posB = b.position();
        final VectorSchemaRoot holdB = transferOut(holders);
        final DataRecord c = pollAndLoad();
        final long posC = c.position();
        assertEquals(List.of(), released, "nothing released while every record is held");
        assertEquals(head0, ring.headPosition());
        final int refs = ring.refCount();
        assertEquals(1 + 1 + 1 + 3, refs, "owner + reader + loader + one per live record");

        // Part of B goes: B stays live.
        holdB.getVector("message_id").close();
        holdB.getVector("data").clear();
        assertEquals(List.of(), released, "B still has buffers elsewhere");
        assertFalse(releasedBit(posB));

        holdB.close();
        assertEquals(List.of(posB), released, "B's last buffer went first");
        assertTrue(releasedBit(posB), "B is marked RELEASED");
        assertEquals(head0, ring.headPosition(), "head waits for A");
        assertEquals(refs - 1, ring.refCount(), "B's reference on the mapping dropped");

        loader.clear();
        assertEquals(List.of(posB, posC), released);
        assertEquals(head0, ring.headPosition(), "head still waits for A");

        // A's memory is intact and correct while held, after its neighbours were released.
        GoldenArrowRingTest.assertBatchEquals(GoldenArrowRingTest.rowsOf(jsonl, 1), holdA, "held batch 1");
        holdA.close();
        assertEquals(List.of(posB, posC, posA), released, "once per record, in the order the last buffer went");
        assertEquals(ring.tailPosition(), ring.headPosition(), "head passed the whole released run A, B, C");
        assertEquals(3, ring.refCount(), "owner + reader + loader");
        assertEquals(0, loader.allocator().getAllocatedMemory());
        assertEquals(0, holders.getAllocatedMemory());
    }

    @Test
    void loadingTheNextRecordReleasesThePreviousOneAndHeadFollows()
    {
        final long a = pollAndLoad().position();
        final long b = pollAndLoad().position();
        assertEquals(List.of(a), released);
        assertEquals(b, ring.headPosition(), "head passed A");
        final long c = pollAndLoad().position();
        assertEquals(List.of(a, b), released);
        assertEquals(c, ring.headPosition());
        loader.close();
        assertEquals(List.of(a, b, c), released, "close released the last record");
        assertEquals(ring.tailPosition(), ring.headPosition());
        assertEquals(2, ring.refCount(), "owner + reader: the loader dropped its reference");
    }

    @Test
    void releaseAfterTheLoaderTheReaderAndTheRingOwnerClosedIsCorrectAndThenTheRingUnmaps()
    {
        final long posA = pollAndLoad().position();
        final VectorSchemaRoot holdA = transferOut(holders);
        final long posB = pollAndLoad().position();
        loader.close();
        assertEquals(List.of(posB), released, "closing the loader released what its root held");
        final RingFormatException closed = assertThrows(RingFormatException.class, () -> loader.load(new DataRecord(), onRelease));
        assertEquals(RingFormatException.Kind.CLOSED, closed.kind(), closed.getMessage());
        reader.close();
        ring.close();
        assertEquals(1, ring.refCount(), "only A's allocation keeps the ring mapped");

        // Still mapped: the held batch reads correctly.
        GoldenArrowRingTest.assertBatchEquals(GoldenArrowRingTest.rowsOf(jsonl, 1), holdA, "batch 1 after every close");
        final long head = ring.headPosition();
        assertEquals(posA, head, "head waits for A");
        holdA.close();
        assertEquals(List.of(posB, posA), released, "A released through the closed reader");
        assertEquals(0, ring.refCount(), "the last buffer's release unmapped the ring");
        assertEquals(0, holders.getAllocatedMemory());

        // The ring is gone: a further release is a clear error, not a crash.
        final RingFormatException gone = assertThrows(RingFormatException.class, () -> reader.release(posB));
        assertEquals(RingFormatException.Kind.CLOSED, gone.kind(), gone.getMessage());
        assertTrue(gone.getMessage().contains("position=" + posB), gone.getMessage());
    }

    @Test
    void aDoubleReleaseIsAClearErrorAndReleasesNothingTwice()
    {
        final long posA = pollAndLoad().position();
        final VectorSchemaRoot holdA = transferOut(holders);
        final long posB = pollAndLoad().position();
        final VarBinaryVector dataB = (VarBinaryVector)loader.root().getVector("data");
        final ArrowBuf bufB = dataB.getDataBuffer();
        final VectorSchemaRoot holdB = transferOut(holders);
        final ArrowBuf heldB = ((VarBinaryVector)holdB.getVector("data")).getDataBuffer();
        holdB.close();
        assertEquals(List.of(posB), released);

        // 1. The ring: B released again (head has not passed it: A is live).
        final IllegalStateException twice = assertThrows(IllegalStateException.class, () -> reader.release(posB));
        assertTrue(twice.getMessage().contains("released twice") && twice.getMessage().contains("position=" + posB), twice.getMessage());

        // 2. Arrow: a buffer of B released once more than it was retained.
        assertThrows(IllegalStateException.class, () -> heldB.getReferenceManager().release(), "over-release of an Arrow buffer");
        assertThrows(IllegalStateException.class, () -> bufB.getReferenceManager().release(), "release of a transferred-away buffer");
        assertEquals(List.of(posB), released, "onRelease not called again");

        // 3. The allocation itself: Arrow calls release0 once; a second call is refused.
        final RecordAllocation allocation = new RecordAllocation(64, ring.address(), 4242, p -> released.add(-p));
        allocation.release0();
        final IllegalStateException again = assertThrows(IllegalStateException.class, allocation::release0);
        assertTrue(again.getMessage().contains("position=4242") && again.getMessage().contains("released twice"), again.getMessage());
        released.remove(Long.valueOf(-4242));

        holdA.close();
        assertEquals(List.of(posB, posA), released);
        assertEquals(reader.cursor(), ring.headPosition(), "head passed A and B, up to the read cursor (C is not polled)");

        // 4. The ring: A released again after head passed it.
        final IllegalArgumentException passed = assertThrows(IllegalArgumentException.class, () -> reader.release(posA));
        assertTrue(passed.getMessage().contains("position=" + posA), passed.getMessage());
    }

    @Test
    void aRecordTheCallerAlsoReleasedByHandIsReportedWhenTheLoaderLetsGoAndNothingLeaks()
    {
        final long posA = pollAndLoad().position();
        final VectorSchemaRoot holdA = transferOut(holders);
        final long posB = pollAndLoad().position();
        reader.release(posB); // the caller's mistake: the loader still holds B
        // The loader's release of B calls reader.release(B) again, inside Arrow's release
        // path; the loader reports it from clear() instead of throwing it through Arrow.
        final IllegalStateException ex = assertThrows(IllegalStateException.class, () -> loader.clear());
        assertTrue(ex.getMessage().contains("released twice") && ex.getMessage().contains("position=" + posB), ex.getMessage());
        assertInstanceOf(IllegalStateException.class, ex.getCause(), "the reader's own exception is the cause");
        assertEquals(List.of(posB), released, "onRelease called once");
        assertEquals(0, loader.allocator().getAllocatedMemory(), "B's buffers are gone");
        assertEquals(1 + 1 + 1 + 1, ring.refCount(), "owner + reader + loader + A: B's reference dropped");

        // Arrow's state stayed consistent: the loader loads, releases and closes cleanly.
        final long posC = pollAndLoad().position();
        holdA.close();
        assertEquals(posC, ring.headPosition(), "head passed A and B");
        loader.close();
        assertEquals(List.of(posB, posA, posC), released);
        assertEquals(ring.tailPosition(), ring.headPosition());
        assertEquals(2, ring.refCount(), "owner + reader");
    }

    @Test
    void closingTheLoaderWhileABufferIsHeldElsewhereReportsItAndKeepsTheRingMappedUntilItGoes()
    {
        final DataRecord a = pollAndLoad();
        final long posA = a.position();
        final VarBinaryVector data = (VarBinaryVector)loader.root().getVector("data");
        final ArrowBuf held = data.getDataBuffer();
        held.getReferenceManager().retain(); // someone else keeps a buffer of A (same allocator)
        final byte first = held.getByte(0);

        final IllegalStateException leak = assertThrows(IllegalStateException.class, () -> loader.close());
        assertTrue(leak.getMessage().contains(a.bodyLength() + " bytes") && leak.getMessage().contains("still held elsewhere"), leak.getMessage());
        assertTrue(leak.getMessage().contains("Allocator(ring:data-0.ring)"), "Arrow's own account: " + leak.getMessage());
        assertEquals(List.of(), released, "A is still held");
        reader.close();
        ring.close();
        assertEquals(1, ring.refCount(), "A's allocation keeps the ring mapped");
        assertEquals(first, held.getByte(0), "the held buffer still reads the mapping");

        assertThrows(RingFormatException.class, () -> loader.load(new DataRecord(), onRelease), "load after close");
        loader.close(); // idempotent: no second report

        held.getReferenceManager().release();
        assertEquals(List.of(posA), released, "the last buffer released A");
        assertEquals(0, ring.refCount(), "and then the ring unmapped");
        assertEquals(0, loader.allocator().getAllocatedMemory());
        assertEquals(0, allocator.getAllocatedMemory());
        // @AfterEach closes the root allocator: it fails if the loader's allocator was left open.
    }

    @Test
    void concurrentOutOfOrderReleasesFromSeveralThreadsReleaseEveryRecordOnce() throws Exception
    {
        // A larger ring of Java-written copies of the golden batches, each handed to its own owner.
        loader.close();
        reader.close();
        ring.close();
        ring = RingFile.open(ArrowRings.createRing(dir, "data-1.ring", 1 << 20), RingFile.OpenOptions.defaults().kind(KIND_DATA));
        reader = new DataRingReader(ring);
        loader = new RingBatchLoader(ring, allocator, true);
        released.clear();
        final ArrowRings.Producer producer = new ArrowRings.Producer(ring);
        final List<ArrowRings.Batch> golden = ArrowRings.goldenBatches();
        final int n = 96;
        for (int i = 0; i < n; i++)
        {
            producer.write(golden.get(i % golden.size()));
        }
        final List<VectorSchemaRoot> owners = new ArrayList<>();
        final List<Long> positions = new ArrayList<>();
        for (int i = 0; i < n; i++)
        {
            positions.add(pollAndLoad().position());
            owners.add(transferOut(holders));
        }
        assertEquals(List.of(), released);
        Collections.shuffle(owners, new Random(7));
        final ConcurrentLinkedQueue<VectorSchemaRoot> queue = new ConcurrentLinkedQueue<>(owners);
        final ExecutorService pool = Executors.newFixedThreadPool(4);
        try
        {
            final CountDownLatch go = new CountDownLatch(1);
            final List<Future<?>> done = new ArrayList<>();
            for (int t = 0; t < 4; t++)
            {
                done.add(pool.submit(() ->
                {
                    go.await();
                    for (VectorSchemaRoot r; (r = queue.poll()) != null; )
                    {
                        r.close();
                    }
                    return null;
                }));
            }
            go.countDown();
            for (final Future<?> f : done)
            {
                f.get(10, TimeUnit.SECONDS);
            }
        }
        finally
        {
            pool.shutdownNow();
        }
        final List<Long> sorted = new ArrayList<>(released);
        Collections.sort(sorted);
        assertEquals(positions, sorted, "every record released exactly once");
        assertEquals(ring.tailPosition(), ring.headPosition(), "head passed every record");
        assertEquals(0, holders.getAllocatedMemory());
        assertEquals(3, ring.refCount(), "owner + reader + loader");
    }
}
