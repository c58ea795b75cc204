package dev.pubsubshm.ring;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

class DataRingScannerTest
{
    @TempDir
    Path dir;

    private final List<AutoCloseable> toClose = new ArrayList<>();

    @AfterEach
    void closeAll() throws Exception
    {
        Collections.reverse(toClose);
        for (final AutoCloseable c : toClose)
        {
            c.close();
        }
    }

    private <T extends AutoCloseable> T closeLater(final T c)
    {
        toClose.add(c);
        return c;
    }

    private RingFile ring(final long capacity)
    {
        return closeLater(RingFile.open(TestRings.createData(dir, 0, capacity)));
    }

    @Test
    void walksRecordsFromAnyPositionWithoutConsuming()
    {
        final RingFile ring = ring(4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(ring));
        final long p1 = producer.writeRaw(new byte[10]);
        final long p2 = producer.writeRaw(new byte[100]);
        producer.writeArrow(64, 256, 7);
        final DataRingScanner scanner = closeLater(new DataRingScanner(ring));
        final DataRecord r = new DataRecord();
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(1, r.batchId());
        assertEquals(p1, r.position());
        assertEquals(TYPE_RAW, r.type());
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(2, r.batchId());
        assertEquals(100, r.bodyLength());
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(TYPE_ARROW, r.type());
        assertEquals(7, r.rowCount());
        assertEquals(DataRingScanner.Status.END, scanner.next(r));
        scanner.seek(p2);
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(2, r.batchId(), "seek to any record start");
        assertEquals(0, ring.headPosition(), "nothing was consumed");
        assertEquals(0, ring.peerPid(RingFile.Side.CONSUMER), "the scanner does not attach as consumer");
    }

    @Test
    void aRecordBeingWrittenIsInProgressAndPaddingIsSkipped()
    {
        final RingFile ring = ring(4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(ring));
        final DataRingScanner scanner = closeLater(new DataRingScanner(ring));
        final DataRecord r = new DataRecord();
        for (int i = 0; i < 5; i++)
        {
            producer.writeRaw(new byte[700]); // 768 bytes each: the sixth needs a PADDING at the end
        }
        long last = 0;
        while (scanner.next(r) == DataRingScanner.Status.RECORD)
        {
            last = r.batchId();
            assertTrue(scanner.tryMarkReleased(r));
        }
        assertEquals(5, last);
        scanner.advanceHead(Long.MAX_VALUE);
        final long claimed = producer.claim(RECORD_HEADER_LENGTH + 700);
        assertTrue(claimed % ring.capacity() == 0, "wrapped: a PADDING record fills the end");
        assertEquals(DataRingScanner.Status.IN_PROGRESS, scanner.next(r), "padding skipped, then a claim in progress");
        producer.fillRaw(claimed, new byte[700]);
        producer.publish(claimed, RECORD_HEADER_LENGTH + 700);
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(6, r.batchId());
    }

    @Test
    void aRecordTheHeadPassedIsStale()
    {
        final RingFile ring = ring(4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(ring));
        final long p1 = producer.writeRaw(new byte[10]);
        producer.writeRaw(new byte[10]);
        final DataRingScanner releaser = closeLater(new DataRingScanner(ring));
        final DataRecord r = new DataRecord();
        assertEquals(DataRingScanner.Status.RECORD, releaser.next(r));
        assertTrue(releaser.tryMarkReleased(r));
        assertEquals(r.position() + 128, releaser.advanceHead(Long.MAX_VALUE));
        final DataRingScanner scanner = closeLater(new DataRingScanner(ring));
        scanner.seek(p1);
        assertEquals(DataRingScanner.Status.STALE, scanner.next(r), "the producer may overwrite it any time");
        scanner.seekToHead();
        assertEquals(DataRingScanner.Status.RECORD, scanner.next(r));
        assertEquals(2, r.batchId());
    }

    @Test
    void releasedBitsAreClaimedOnceAndTheHeadStopsAtTheFirstUnreleasedRecordOrTheLimit()
    {
        final RingFile ring = ring(8192);
        final TestDataProducer producer = closeLater(new TestDataProducer(ring));
        final long[] pos = new long[5];
        for (int i = 0; i < 5; i++)
        {
            pos[i] = producer.writeRaw(new byte[50]);
        }
        final DataRingScanner a = closeLater(new DataRingScanner(ring));
        final DataRingScanner b = closeLater(new DataRingScanner(ring));
        final DataRecord ra = new DataRecord();
        final DataRecord rb = new DataRecord();
        assertEquals(DataRingScanner.Status.RECORD, a.next(ra));
        assertEquals(DataRingScanner.Status.RECORD, b.next(rb));
        assertTrue(a.tryMarkReleased(ra));
        assertFalse(b.tryMarkReleased(rb), "the second claimer loses");
        // Release batches 1, 2 and 4; 3 stays: the head stops at 3.
        a.next(ra);
        assertTrue(a.tryMarkReleased(ra));
        a.next(ra);
        a.next(ra);
        assertTrue(a.tryMarkReleased(ra));
        assertEquals(pos[2], a.advanceHead(Long.MAX_VALUE));
        // Release 3: the head may go to 5, but a limit at batch 4's position holds it there.
        final DataRecord r3 = new DataRecord();
        a.seek(pos[2]);
        a.next(r3);
        assertTrue(a.tryMarkReleased(r3));
        assertEquals(pos[3], a.advanceHead(pos[3]));
        assertEquals(pos[4], a.advanceHead(Long.MAX_VALUE), "batch 5 is not released");
        // A claim given back is not released any more.
        a.seek(pos[4]);
        final DataRecord r5 = new DataRecord();
        a.next(r5);
        assertTrue(a.tryMarkReleased(r5));
        a.clearReleased(r5.position());
        assertEquals(pos[4], a.advanceHead(Long.MAX_VALUE));
        assertTrue(a.tryMarkReleased(r5));
        assertEquals(ring.tailPosition(), a.advanceHead(Long.MAX_VALUE));
    }

    @Test
    void corruptRecordsAboveTheHeadAreReported()
    {
        final RingFile ring = ring(4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(ring));
        final long p = producer.writeRaw(new byte[10]);
        ring.putLong(ring.offsetOf(p) + RECORD_POSITION_OFFSET, 4096);
        final DataRingScanner scanner = closeLater(new DataRingScanner(ring));
        final RingFormatException ex = assertThrows(RingFormatException.class, () -> scanner.next(new DataRecord()));
        assertEquals(RingFormatException.Kind.CORRUPT_RECORD, ex.kind());
        assertTrue(ex.getMessage().contains("field position=4096"), ex.getMessage());
    }
}
