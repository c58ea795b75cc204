package dev.pubsubshm.ring;

import dev.pubsubshm.ring.RingFormatException.Kind;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

class DataRingReaderTest
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

    /** Separate mappings for producer and consumer, as across processes. */
    private RingFile open(final Path path)
    {
        return closeLater(RingFile.open(path));
    }

    private static byte[] pattern(final int length, final long seed)
    {
        final byte[] b = new byte[length];
        for (int i = 0; i < length; i++)
        {
            b[i] = (byte)(seed * 31 + i);
        }
        return b;
    }

    private static void assertBody(final DataRecord record, final byte[] expected)
    {
        final ByteBuffer body = record.bodyBuffer();
        assertEquals(expected.length, body.remaining());
        for (int i = 0; i < expected.length; i++)
        {
            assertEquals(expected[i], body.get(body.position() + i), "body byte " + i);
        }
    }

    @Test
    void pollsRawRecordsInOrderWithEveryHeaderField()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));

        assertNull(reader.poll(), "empty ring");
        final long p1 = producer.writeRaw(pattern(100, 1));
        final long p2 = producer.writeRaw(new byte[0]);
        assertEquals(0, p1);
        assertEquals(192, p2, "64 + 100 bytes occupy 192");

        final DataRecord r = reader.poll();
        assertNotNull(r);
        assertEquals(0, r.position());
        assertEquals(TYPE_RAW, r.type());
        assertEquals(1, r.batchId());
        assertEquals(1, r.rowCount());
        assertEquals(0, r.state());
        assertEquals(164, r.length());
        assertEquals(192, r.alignedLength());
        assertEquals(64, r.metaOffset());
        assertEquals(0, r.metaLength());
        assertEquals(64, r.bodyOffset());
        assertEquals(100, r.bodyLength());
        assertEquals(1_700_000_000_000_000_000L, r.producedUnixNs());
        assertEquals(4096, r.recordOffset());
        assertEquals(4096 + 64, r.bodyFileOffset());
        assertEquals(ring.address() + 4096 + 64, r.bodyAddress());
        assertSame(ring, r.ring());
        assertBody(r, pattern(100, 1));
        assertSame(r.bodyBuffer(), r.bodyBuffer(), "the body view is reused");

        final DataRecord r2 = reader.poll();
        assertSame(r, r2, "poll() reuses the reader's view");
        assertEquals(192, r2.position());
        assertEquals(2, r2.batchId());
        assertEquals(0, r2.bodyLength());
        assertNull(reader.poll());
        assertEquals(256, reader.cursor());
        assertEquals(0, ring.headPosition(), "polling does not release");
    }

    @Test
    void pollsArrowRecordsAndChecksThePrefix()
    {
        final Path path = TestRings.createData(dir, 0, 8192);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final DataRingReader reader = closeLater(new DataRingReader(open(path)));
        producer.writeArrow(136, 1000, 42);
        final DataRecord r = new DataRecord();
        assertTrue(reader.poll(r));
        assertEquals(TYPE_ARROW, r.type());
        assertEquals(42, r.rowCount());
        assertEquals(136, r.metaLength());
        assertEquals(256, r.bodyOffset(), "align64(64 + 136)");
        assertEquals(1000, r.bodyLength());
        assertEquals(1256, r.length());
        assertEquals(0, r.bodyAddress() % 64, "Arrow bodies are 64-byte aligned");
        final ByteBuffer meta = r.metaBuffer();
        assertEquals(136, meta.remaining());
        assertEquals(ARROW_CONTINUATION, meta.getInt(meta.position()));
        assertEquals(128, meta.getInt(meta.position() + 4));
        final ByteBuffer body = r.bodyBuffer();
        assertEquals((byte)999, body.get(body.limit() - 1));
    }

    @Test
    void wrapsWithPaddingAndCarriesEveryByte()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        final Random random = new Random(42);
        final DataRecord r = new DataRecord();
        long expectedBatch = 1;
        int written = 0;
        long paddings = 0;
        while (written < 3000)
        {
            // Fill the ring as far as it goes, then drain it.
            final List<Integer> sizes = new ArrayList<>();
            while (true)
            {
                final int size = random.nextInt(2048 - 64 + 1);
                final long before = producer.tail();
                try
                {
                    producer.writeRaw(pattern(size, producer.nextBatchId()));
                }
                catch (final IllegalStateException full)
                {
                    break;
                }
                if (producer.tail() - before > align64(64 + size))
                {
                    paddings++;
                }
                sizes.add(size);
                written++;
            }
            assertFalse(sizes.isEmpty());
            for (final int size : sizes)
            {
                assertTrue(reader.poll(r));
                assertEquals(expectedBatch, r.batchId());
                assertBody(r, pattern(size, expectedBatch));
                reader.release(r.position());
                expectedBatch++;
            }
            assertFalse(reader.poll(r));
            assertEquals(ring.tailPosition(), ring.headPosition(), "everything released");
        }
        assertTrue(paddings > 10, "the ring wrapped with padding " + paddings + " times");
        assertTrue(ring.tailPosition() > 100 * 4096L);
    }

    @Test
    void waitsWhileTheProducerWritesAndThenDelivers()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final DataRingReader reader = closeLater(new DataRingReader(open(path)));
        final long position = producer.claim(64 + 10);
        producer.fillRaw(position, pattern(10, 1));
        final long until = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(150);
        while (System.nanoTime() < until)
        {
            assertNull(reader.poll(), "a negative length is still being written by a live producer");
        }
        assertEquals(0, reader.abortedCount());
        producer.publish(position, 64 + 10);
        final DataRecord r = reader.poll();
        assertNotNull(r);
        assertBody(r, pattern(10, 1));
    }

    @Test
    void skipsAHalfWrittenRecordOfADeadProducer()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final ProcessIdentity self = ProcessIdentity.self();
        final ProcessIdentity reusedPid = new ProcessIdentity(self.pid(), self.startTicks() + 1);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path), reusedPid));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring, TimeUnit.MILLISECONDS.toNanos(200)));

        final long first = producer.writeRaw(pattern(5, 1));
        final long stuck = producer.claim(64 + 300); // never published: the producer "died"
        final long after = producer.writeRaw(pattern(7, 2)); // the dead record never got a batch id

        final DataRecord r = new DataRecord();
        assertTrue(reader.poll(r));
        assertEquals(first, r.position());
        assertFalse(reader.poll(r), "the stuck record is waited on first");
        assertTrue(reader.poll(r, BusySpinIdleStrategy.INSTANCE, TimeUnit.SECONDS.toNanos(5)), "skipped in time");
        assertEquals(after, r.position());
        assertEquals(2, r.batchId());
        assertEquals(1, reader.abortedCount());
        final int stuckState = ring.getIntAcquire(ring.offsetOf(stuck) + RECORD_STATE_OFFSET);
        assertEquals(STATE_RELEASED | STATE_ABORTED, stuckState);

        reader.release(first);
        assertEquals(after, ring.headPosition(), "head passes the released record and the aborted one");
        reader.release(after);
        assertEquals(ring.tailPosition(), ring.headPosition());
    }

    @Test
    void skipsAHalfWrittenRecordOfAClosedProducer()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = new TestDataProducer(open(path));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        producer.claim(64 + 1);
        producer.close();
        final DataRecord r = new DataRecord();
        final long until = System.nanoTime() + TimeUnit.SECONDS.toNanos(5);
        while (reader.abortedCount() == 0 && System.nanoTime() < until)
        {
            assertFalse(reader.poll(r));
        }
        assertEquals(1, reader.abortedCount());
        assertEquals(128, ring.headPosition());
        assertTrue(reader.isEndOfStream());
        assertEquals(PeerState.CLOSED, reader.producerState());
    }

    @Test
    void releasesOutOfOrderAdvanceHeadOnlyOverTheContiguousRun()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        final long a = producer.writeRaw(pattern(10, 1));
        final long b = producer.writeRaw(pattern(100, 2));
        final long c = producer.writeRaw(pattern(200, 3));
        final long d = producer.writeRaw(pattern(300, 4));
        final long e = producer.writeRaw(pattern(1, 5)); // never polled
        final DataRecord r = new DataRecord();
        for (int i = 0; i < 4; i++)
        {
            assertTrue(reader.poll(r));
        }

        reader.release(c);
        assertEquals(a, ring.headPosition());
        reader.release(b);
        assertEquals(a, ring.headPosition(), "a is still held");
        assertEquals(STATE_RELEASED, ring.getIntAcquire(ring.offsetOf(b) + RECORD_STATE_OFFSET));
        reader.release(a);
        assertEquals(d, ring.headPosition(), "head passes a, b, c and stops at the unreleased d");
        reader.release(d);
        assertEquals(e, ring.headPosition(), "head stops at the read cursor, before the unpolled e");
        assertTrue(reader.poll(r));
        reader.release(e);
        assertEquals(ring.tailPosition(), ring.headPosition());
    }

    @Test
    void headNeverPassesTheCursorEvenOverStaleReleasedStateOfAPreviousLap()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        final long a = producer.writeRaw(pattern(10, 1));
        final long b = producer.claim(64 + 10); // being written
        // State bits left by an earlier lap whose record at this offset was skipped as
        // aborted, before the producer has written state = 0 for this lap.
        ring.getAndBitwiseOrInt(ring.offsetOf(b) + RECORD_STATE_OFFSET, STATE_RELEASED | STATE_ABORTED);
        final DataRecord r = new DataRecord();
        assertTrue(reader.poll(r));
        reader.release(a);
        assertEquals(b, ring.headPosition(), "b is not below the read cursor: head must wait");
    }

    @Test
    void releaseRejectsWhatWasNotPolledOrIsReleasedTwice()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final DataRingReader reader = closeLater(new DataRingReader(open(path)));
        final long a = producer.writeRaw(pattern(100, 1));
        final long b = producer.writeRaw(pattern(100, 2));
        assertNotNull(reader.poll());
        IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> reader.release(b));
        assertTrue(ex.getMessage().contains("position=" + b) && ex.getMessage().contains("read cursor=192"), ex.getMessage());
        assertNotNull(reader.poll());
        ex = assertThrows(IllegalArgumentException.class, () -> reader.release(a + 64));
        assertTrue(ex.getMessage().contains("not the start of a record"), ex.getMessage());
        reader.release(b);
        final IllegalStateException twice = assertThrows(IllegalStateException.class, () -> reader.release(b));
        assertTrue(twice.getMessage().contains("released twice"), twice.getMessage());
        reader.release(a);
        ex = assertThrows(IllegalArgumentException.class, () -> reader.release(a));
        assertTrue(ex.getMessage().contains("head_position=384"), ex.getMessage());
    }

    @Test
    void releasesFromManyThreadsInAnyOrderFreeTheWholeRing() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 1 << 20);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        final ExecutorService pool = Executors.newFixedThreadPool(4);
        try
        {
            for (int round = 0; round < 20; round++)
            {
                final List<Long> positions = new ArrayList<>();
                for (int i = 0; i < 1000; i++)
                {
                    producer.writeRaw(pattern(i % 500, i));
                }
                final DataRecord r = new DataRecord();
                while (reader.poll(r))
                {
                    positions.add(r.position());
                }
                assertEquals(1000, positions.size());
                Collections.shuffle(positions, new Random(round));
                final CountDownLatch start = new CountDownLatch(1);
                final List<Future<?>> futures = new ArrayList<>();
                for (int t = 0; t < 4; t++)
                {
                    final List<Long> mine = positions.subList(t * 250, (t + 1) * 250);
                    futures.add(pool.submit(() ->
                    {
                        start.await();
                        for (final long p : mine)
                        {
                            reader.release(p);
                        }
                        return null;
                    }));
                }
                start.countDown();
                for (final Future<?> f : futures)
                {
                    f.get(30, TimeUnit.SECONDS);
                }
                assertEquals(ring.tailPosition(), ring.headPosition(), "round " + round);
            }
        }
        finally
        {
            pool.shutdownNow();
        }
    }

    @Test
    void pollAndReleaseAllocateNothingPerRecord()
    {
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean)java.lang.management.ManagementFactory.getThreadMXBean();
        final Path path = TestRings.createData(dir, 0, 1 << 16);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final DataRingReader reader = closeLater(new DataRingReader(open(path)));
        final byte[] body = pattern(1024, 7);
        final DataRecord r = new DataRecord();
        final java.util.zip.CRC32C crc = new java.util.zip.CRC32C();
        final int warmup = 50_000;
        final int measured = 100_000;
        long sink = 0;
        long before = 0;
        for (int i = 0; i < warmup + measured; i++)
        {
            if (i == warmup)
            {
                before = threads.getCurrentThreadAllocatedBytes();
            }
            producer.writeRaw(body);
            if (!reader.poll(r))
            {
                fail("record " + i + " not polled");
            }
            crc.update(r.bodyBuffer());
            sink += r.batchId();
            reader.release(r.position());
        }
        final long allocated = threads.getCurrentThreadAllocatedBytes() - before;
        assertTrue(sink > 0);
        assertTrue(allocated < measured, "allocated " + allocated + " bytes for " + measured +
            " messages of 1 KiB: must be < 1 byte per message");
    }

    @Test
    void attachRefusesASecondLiveConsumerProcess() throws Exception
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final RingFile ring = open(path);
        final Process other = new ProcessBuilder("sleep", "30").start();
        try
        {
            final long ticks = ProcessIdentity.startTicksOf(other.pid());
            ring.attach(RingFile.Side.CONSUMER, new ProcessIdentity(other.pid(), ticks), System.nanoTime());
            final RingFormatException ex = assertThrows(RingFormatException.class, () -> new DataRingReader(ring));
            assertEquals(Kind.PERMISSION, ex.kind());
            assertTrue(ex.getMessage().contains("pid=" + other.pid()), ex.getMessage());
            assertEquals(1, ring.refCount(), "a failed attach keeps no reference");

            ring.markClosed(RingFile.Side.CONSUMER); // it detached cleanly: now we may attach
            closeLater(new DataRingReader(ring));
            assertEquals(ProcessIdentity.self().pid(), ring.getLong(CONSUMER_PID_OFFSET));
            assertEquals(0, ring.getLong(CONSUMER_CLOSED_OFFSET));
        }
        finally
        {
            other.destroyForcibly().waitFor();
        }
    }

    @Test
    void closeMarksTheConsumerClosedAndKeepsReleasesWorkingWhileMapped()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = new DataRingReader(ring);
        assertEquals(2, ring.refCount());
        final long a = producer.writeRaw(pattern(3, 1));
        assertNotNull(reader.poll());
        reader.close();
        reader.close();
        assertEquals(1, ring.refCount());
        assertEquals(1, ring.getLong(CONSUMER_CLOSED_OFFSET));
        assertEquals(Kind.CLOSED, assertThrows(RingFormatException.class, reader::poll).kind());
        reader.release(a);
        assertEquals(128, ring.headPosition());
    }

    @Test
    void theCallerMayCloseItsRingWhileTheReaderRuns()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = RingFile.open(path);
        final DataRingReader reader = new DataRingReader(ring);
        ring.close();
        producer.writeRaw(pattern(3, 1));
        final DataRecord r = reader.poll();
        assertNotNull(r);
        reader.release(r.position());
        reader.close();
        assertEquals(0, ring.refCount(), "unmapped when the reader let go");
        assertEquals(Kind.CLOSED, assertThrows(RingFormatException.class, () -> reader.release(0)).kind());
    }

    @Test
    void heartbeatStampsTheConsumerBlock()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        final long before = System.nanoTime();
        reader.heartbeat();
        assertTrue(ring.getLong(CONSUMER_HEARTBEAT_NS_OFFSET) >= before);
        assertEquals(PeerState.NOT_ATTACHED, reader.producerState());
        assertThrows(IllegalArgumentException.class, () -> new DataRingReader(open(TestRings.createCommit(dir, 4096))));
    }

    // ---------------------------------------------------------------------------------
    // Corrupt records: each gives CORRUPT_RECORD naming the field, touches nothing out of
    // bounds, and leaves the cursor on the bad record.
    // ---------------------------------------------------------------------------------

    /** Damages the record at file offset {@code offset}, through another mapping of the file. */
    private interface Mutation
    {
        void apply(RingFile ring, int offset);
    }

    private void assertCorrupt(final String field, final String inMessage, final int bodyLength,
        final long startPosition, final boolean arrow, final Mutation mutation)
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        if (startPosition != 0)
        {
            TestRings.pokeLong(path, TAIL_POSITION_OFFSET, startPosition);
            TestRings.pokeLong(path, HEAD_POSITION_OFFSET, startPosition);
        }
        final RingFile producerRing = RingFile.open(path);
        final RingFile ring = RingFile.open(path);
        try (TestDataProducer producer = new TestDataProducer(producerRing);
             DataRingReader reader = new DataRingReader(ring))
        {
            final long position = arrow ? producer.writeArrow(24, bodyLength, 1) : producer.writeRaw(new byte[bodyLength]);
            mutation.apply(producerRing, producerRing.offsetOf(position));
            for (int attempt = 0; attempt < 2; attempt++)
            {
                final RingFormatException ex = assertThrows(RingFormatException.class, reader::poll, field);
                assertEquals(Kind.CORRUPT_RECORD, ex.kind(), ex.getMessage());
                assertEquals(field, ex.field(), ex.getMessage());
                assertTrue(ex.getMessage().startsWith("corrupt record at position=" + position + " field " + field + "="),
                    ex.getMessage());
                assertTrue(ex.getMessage().contains(inMessage), ex.getMessage());
                assertTrue(ex.getMessage().contains(path.toString()), ex.getMessage());
                assertEquals(position, reader.cursor(), "the cursor stays on the bad record");
            }
        }
        finally
        {
            producerRing.close();
            ring.close();
        }
    }

    @Test
    void lengthBeyondMaxRecordLength()
    {
        assertCorrupt("length", "max_record_length=2048", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, 3000));
        assertCorrupt("length", "max_record_length=2048", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, Integer.MAX_VALUE));
        assertCorrupt("length", "[64, max_record_length=2048]", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, 63));
    }

    @Test
    void lengthPointingOutsideTheRingArea()
    {
        // A record in the last 128 bytes of the ring area claims 200 bytes: past the mapping.
        assertCorrupt("length", "crosses the end of the ring area (index 3968 + 256 > capacity 4096)", 50, 3968, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, 200));
        assertCorrupt("length", "extends past tail_position=192", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, 1000));
    }

    @Test
    void negativeLengthsAreBoundsCheckedToo()
    {
        assertCorrupt("length", "|length|", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, -5));
        assertCorrupt("length", "|length|", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, Integer.MIN_VALUE));
        assertCorrupt("length", "crosses the end", 50, 3968, false, (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, -1000));
    }

    @Test
    void zeroLengthBelowTail()
    {
        assertCorrupt("length", "0 never appears below tail_position=192", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_LENGTH_OFFSET, 0));
    }

    @Test
    void badTypeStatePositionBatchAndRows()
    {
        assertCorrupt("type", "must be 1 (ARROW), 2 (PADDING) or 3 (RAW)", 100, 0, false,
            (ring, off) -> ring.putInt(off + RECORD_TYPE_OFFSET, 9));
        assertCorrupt("position", "position=4096", 100, 0, false,
            (ring, off) -> ring.putLong(off + RECORD_POSITION_OFFSET, 4096));
        assertCorrupt("state", "state=4", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_STATE_OFFSET, 4));
        assertCorrupt("batch_id", "batch_id=0", 100, 0, false, (ring, off) -> ring.putLong(off + RECORD_BATCH_ID_OFFSET, 0));
        assertCorrupt("row_count", "row_count=-1", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_ROW_COUNT_OFFSET, -1));
        assertCorrupt("length", "multiple of 64", 100, 0, false, (ring, off) ->
        {
            ring.putInt(off + RECORD_TYPE_OFFSET, TYPE_PADDING);
            ring.putInt(off + RECORD_LENGTH_OFFSET, 100);
        });
    }

    @Test
    void rawOffsetsAndLengthsMustAgree()
    {
        assertCorrupt("meta_offset", "meta_offset=128", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_META_OFFSET_OFFSET, 128));
        assertCorrupt("meta_length", "must be 0 for RAW", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_META_LENGTH_OFFSET, 8));
        assertCorrupt("body_offset", "must be 64 for RAW", 100, 0, false, (ring, off) -> ring.putInt(off + RECORD_BODY_OFFSET_OFFSET, 128));
        assertCorrupt("body_length", "body_offset(64) + body_length must equal length(164)", 100, 0, false,
            (ring, off) -> ring.putLong(off + RECORD_BODY_LENGTH_OFFSET, 99));
        assertCorrupt("body_length", "body_length=-1", 100, 0, false, (ring, off) -> ring.putLong(off + RECORD_BODY_LENGTH_OFFSET, -1));
    }

    @Test
    void arrowOffsetsLengthsAndPrefixMustAgree()
    {
        assertCorrupt("meta_length", "multiple of 8", 100, 0, true, (ring, off) -> ring.putInt(off + RECORD_META_LENGTH_OFFSET, 12));
        assertCorrupt("meta_length", "at least 8", 100, 0, true, (ring, off) -> ring.putInt(off + RECORD_META_LENGTH_OFFSET, 0));
        assertCorrupt("body_offset", "must be align64(64 + meta_length=24) = 128", 100, 0, true,
            (ring, off) -> ring.putInt(off + RECORD_BODY_OFFSET_OFFSET, 192));
        assertCorrupt("body_offset", "body_offset=64", 100, 0, true, (ring, off) -> ring.putInt(off + RECORD_BODY_OFFSET_OFFSET, 64));
        assertCorrupt("body_length", "body_offset(128) + body_length must equal length(228)", 100, 0, true,
            (ring, off) -> ring.putLong(off + RECORD_BODY_LENGTH_OFFSET, 1_000_000));
        assertCorrupt("arrow continuation", "0x0", 100, 0, true, (ring, off) -> ring.putInt(off + RECORD_HEADER_LENGTH, 0));
        assertCorrupt("arrow metadata size", "must equal meta_length - 8 = 16", 100, 0, true,
            (ring, off) -> ring.putInt(off + RECORD_HEADER_LENGTH + 4, 99));
    }

    @Test
    void batchIdsMustBeConsecutive()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final TestDataProducer producer = closeLater(new TestDataProducer(open(path)));
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        producer.writeRaw(pattern(1, 1));
        final long second = producer.writeRaw(pattern(1, 2));
        ring.putLong(ring.offsetOf(second) + RECORD_BATCH_ID_OFFSET, 5);
        assertNotNull(reader.poll());
        final RingFormatException ex = assertThrows(RingFormatException.class, reader::poll);
        assertEquals("batch_id", ex.field());
        assertTrue(ex.getMessage().contains("batch_id=5") && ex.getMessage().contains("previous record's batch_id 1"),
            ex.getMessage());
    }

    @Test
    void aTailRunningAheadByMoreThanTheCapacityIsBadHeader()
    {
        final Path path = TestRings.createData(dir, 0, 4096);
        final RingFile ring = open(path);
        final DataRingReader reader = closeLater(new DataRingReader(ring));
        ring.putLongRelease(TAIL_POSITION_OFFSET, 4096 + 64);
        final RingFormatException ex = assertThrows(RingFormatException.class, reader::poll);
        assertEquals(Kind.BAD_HEADER, ex.kind());
        assertEquals("tail_position", ex.field());
    }
}
