package dev.pubsubshm.arrow;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.function.Consumer;
import java.util.function.LongConsumer;

import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.ring.RingFormatException;

import static dev.pubsubshm.arrow.ArrowRings.*;
import static dev.pubsubshm.ring.RingDescriptor.KIND_DATA;
import static dev.pubsubshm.ring.RingDescriptor.RECORD_STATE_OFFSET;
import static dev.pubsubshm.ring.RingDescriptor.STATE_RELEASED;
import static org.junit.jupiter.api.Assertions.*;

/**
 * ARROW records whose flatbuffer or body breaks a rule, written per FORMAT.md by the Java
 * test writer (valid record headers, so only the Arrow layer can catch them): every one is
 * a {@link RingFormatException} {@code CORRUPT_RECORD} naming the field, never an
 * out-of-bounds read or a crash; onRelease is not called (the record stays the caller's),
 * no mapping reference and no allocator byte is left behind, and the loader goes on
 * loading valid records.
 */
class CorruptArrowRecordTest
{
    @TempDir
    Path dir;

    private RingFile ring;
    private RootAllocator allocator;
    private DataRingReader reader;
    private RingBatchLoader loader;
    private Producer producer;
    private final List<Long> released = new ArrayList<>();
    private LongConsumer onRelease;
    /** The golden batch of 9 rows: every column, nulls, attributes. */
    private Batch valid;

    @BeforeEach
    void open()
    {
        ring = RingFile.open(createRing(dir, "data-0.ring", 1 << 16), RingFile.OpenOptions.defaults().kind(KIND_DATA));
        allocator = new RootAllocator();
        reader = new DataRingReader(ring);
        loader = new RingBatchLoader(ring, allocator, true);
        producer = new Producer(ring);
        onRelease = position ->
        {
            released.add(position);
            reader.release(position);
        };
        valid = goldenBatches().get(1);
        assertEquals(9, valid.rowCount);
        assertEquals(NODE_COUNT, valid.nodes.size());
        assertEquals(BUFFER_COUNT, valid.buffers.size());
    }

    @AfterEach
    void close()
    {
        loader.close();
        reader.close();
        ring.close();
        assertEquals(0, ring.refCount(), "unmapped");
        assertEquals(0, allocator.getAllocatedMemory());
        allocator.close();
    }

    /** Writes {@code b} with {@code change} applied, loads it, and returns the failure. */
    private RingFormatException corrupt(final Consumer<Batch> change)
    {
        final Batch b = valid.copy();
        change.accept(b);
        return corrupt(flatbuffer(b), b.body, b.rowCount);
    }

    private RingFormatException corrupt(final byte[] flatbuffer, final byte[] body, final int rowCount)
    {
        final Outcome o = attempt(flatbuffer, body, rowCount);
        assertNotNull(o.failure, "the corrupt record loaded");
        return o.failure;
    }

    private record Outcome(RingFormatException failure, int rows)
    {
    }

    /**
     * Writes and loads one record. A failure must be CORRUPT_RECORD, leave nothing behind and
     * not call onRelease; a success must survive reading every value (bounds-checked) and
     * release the record once. Either way the record is released and head catches up.
     */
    private Outcome attempt(final byte[] flatbuffer, final byte[] body, final int rowCount)
    {
        producer.write(flatbuffer, body, rowCount);
        final DataRecord r = new DataRecord();
        assertTrue(reader.poll(r));
        final int refs = ring.refCount();
        released.clear();
        try
        {
            loader.load(r, onRelease);
        }
        catch (final RingFormatException ex)
        {
            assertEquals(RingFormatException.Kind.CORRUPT_RECORD, ex.kind(), ex.getMessage());
            assertNotNull(ex.field(), ex.getMessage());
            assertTrue(ex.getMessage().contains(ex.field()) && ex.getMessage().contains("position=" + r.position()), ex.getMessage());
            assertEquals(List.of(), released, "a failed load does not call onRelease");
            assertEquals(0, ring.getIntVolatile(ring.offsetOf(r.position()) + RECORD_STATE_OFFSET) & STATE_RELEASED, "not released");
            assertEquals(0, loader.allocator().getAllocatedMemory(), "no allocator byte left: " + ex.getMessage());
            assertEquals(refs, ring.refCount(), "no mapping reference left");
            assertEquals(0, loader.root().getRowCount());
            reader.release(r.position()); // the caller's record: it gives it back
            assertEquals(ring.tailPosition(), ring.headPosition());
            return new Outcome(ex, -1);
        }
        final int rows = loader.root().getRowCount();
        for (final FieldVector v : loader.root().getFieldVectors())
        {
            for (int i = 0; i < rows; i++)
            {
                v.getObject(i); // ArrowBuf bounds checks are on: an out-of-bounds read throws
            }
        }
        loader.clear();
        assertEquals(List.of(r.position()), released);
        assertEquals(refs, ring.refCount());
        assertEquals(ring.tailPosition(), ring.headPosition());
        return new Outcome(null, rows);
    }

    private static void assertField(final String field, final RingFormatException ex, final String... details)
    {
        assertEquals(field, ex.field(), ex.getMessage());
        for (final String d : details)
        {
            assertTrue(ex.getMessage().contains(d), "\"" + d + "\" in: " + ex.getMessage());
        }
    }

    @Test
    void theValidBatchLoadsAndTheLoaderGoesOnAfterEveryFailure()
    {
        assertNull(attempt(flatbuffer(valid), valid.body, valid.rowCount).failure);
        corrupt(b -> b.buffers.get(BUF_DATA_DATA)[0] = b.bodyLength);
        assertNull(attempt(flatbuffer(valid), valid.body, valid.rowCount).failure, "a valid record after a corrupt one");
    }

    @Test
    void aBufferOutsideTheBody()
    {
        final long body = valid.bodyLength;
        assertField("arrow buffer 7", corrupt(b -> b.buffers.get(BUF_DATA_DATA)[0] = body - 8), "must lie inside the body of " + body);
        assertField("arrow buffer 7", corrupt(b -> b.buffers.get(BUF_DATA_DATA)[1] = body + 1));
        assertField("arrow buffer 0", corrupt(b -> b.buffers.get(0)[0] = -64));
        assertField("arrow buffer 21", corrupt(b -> b.buffers.get(BUF_DELIVERY_ATTEMPT_DATA)[0] = body + 64));
        assertField("arrow buffer 2", corrupt(b -> b.buffers.get(BUF_MESSAGE_ID_DATA)[1] = Long.MAX_VALUE), "+" + Long.MAX_VALUE);
        assertField("arrow buffer 2", corrupt(b -> b.buffers.get(BUF_MESSAGE_ID_DATA)[1] = -1));
    }

    @Test
    void aWrongRowCount()
    {
        assertField("arrow length", corrupt(b -> b.length = 10), "must equal row_count=9");
        assertField("arrow length", corrupt(b -> b.rowCount = 8), "must equal row_count=8");
        // Header and RecordBatch agree, the columns do not.
        assertField("arrow node of message_id", corrupt(b ->
        {
            b.rowCount = 10;
            b.length = 10;
        }), "row_count=10");
        assertField("arrow node of delivery_attempt", corrupt(b -> b.nodes.get(NODE_COUNT - 1)[0] = 8));
        assertField("arrow node 0", corrupt(b -> b.nodes.get(0)[1] = 10), "null_count <= length");
        assertField("arrow node 8", corrupt(b -> b.nodes.get(8)[0] = 1L << 32));
    }

    @Test
    void aWrongNodeOrBufferCount()
    {
        assertField("arrow nodes/buffers", corrupt(b -> b.nodes.remove(NODE_COUNT - 1)), "8/22", "needs 9/22");
        assertField("arrow nodes/buffers", corrupt(b -> b.nodes.add(new long[] {9, 0})), "10/22");
        assertField("arrow nodes/buffers", corrupt(b -> b.buffers.remove(BUFFER_COUNT - 1)), "9/21");
        assertField("arrow nodes/buffers", corrupt(b -> b.buffers.add(new long[] {0, 8})), "9/23");
        assertField("arrow nodes/buffers", corrupt(b ->
        {
            b.nodes.clear();
            b.buffers.clear();
        }), "0/0");
    }

    @Test
    void theWrongMessageOrBodyLength()
    {
        assertField("arrow message header_type", corrupt(b -> b.headerType = MessageHeader.DictionaryBatch));
        assertField("arrow bodyLength", corrupt(b -> b.bodyLength = b.body.length + 64L), "body_length=" + valid.body.length);
        assertField("arrow compression", corrupt(b -> b.compressed = true));
    }

    @Test
    void offsetsGoingBackwardsOrPastTheirData()
    {
        // message_id offsets: 10 ints for 9 rows.
        final int o4 = valid.bodyInt(BUF_MESSAGE_ID_OFFSETS, 4);
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_MESSAGE_ID_OFFSETS, 5, o4 - 1)), "vector message_id", "offset[5]");
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_MESSAGE_ID_OFFSETS, 0, -1)), "vector message_id", "first offset -1");
        final long idData = valid.buffers.get(BUF_MESSAGE_ID_DATA)[1];
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_MESSAGE_ID_OFFSETS, 9, (int)idData + 1)),
            "vector message_id", "last offset " + (idData + 1));
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_DATA_OFFSETS, 9, Integer.MAX_VALUE)), "vector data", "last offset");
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_DATA_OFFSETS, 1, Integer.MIN_VALUE)), "vector data");
        // The data buffer shrunk under its offsets.
        final int dataEnd = valid.bodyInt(BUF_DATA_OFFSETS, 9);
        assertField("arrow vectors", corrupt(b -> b.buffers.get(BUF_DATA_DATA)[1] = dataEnd - 1), "vector data", "last offset " + dataEnd);
        // Map offsets past the entries, key offsets past the key bytes.
        final long entries = valid.nodes.get(4)[0];
        assertTrue(entries > 0, "the batch has attributes");
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_ATTRIBUTES_OFFSETS, 9, (int)entries + 1)), "vector attributes", "last offset");
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_KEY_OFFSETS, (int)entries, Integer.MAX_VALUE)), "vector key");
        assertField("arrow vectors", corrupt(b -> b.buffers.get(BUF_KEY_DATA)[1] = 0), "vector key");
        // Struct children shorter than the struct.
        assertField("arrow vectors", corrupt(b -> b.nodes.get(5)[0] = entries - 1), "vector key", "in a struct of " + entries);
        // Fixed-width values too short for the rows.
        assertField("arrow vectors", corrupt(b -> b.buffers.get(BUF_DELIVERY_ATTEMPT_DATA)[1] = 8), "vector delivery_attempt");
        // A map whose last offset claims 2^31 - 1 entries: refused before Arrow sizes the
        // entries by it (VectorSchemaRoot.setRowCount would reallocate them to fit).
        assertField("arrow vectors", corrupt(b -> b.putBodyInt(BUF_ATTRIBUTES_OFFSETS, 9, Integer.MAX_VALUE)), "vector attributes");
    }

    @Test
    void aValidityBitmapShorterThanItsNode()
    {
        // Short: Arrow would keep it and read past it; empty: Arrow would allocate a
        // replacement (up to 256 MiB for a node of 2^31 - 1). FORMAT.md writes them all.
        assertField("arrow buffer 0", corrupt(b -> b.buffers.get(0)[1] = 1), "node 0 (length 9) needs 2 bytes");
        assertField("arrow buffer 0", corrupt(b ->
        {
            b.buffers.get(0)[1] = 1;
            b.nodes.get(0)[1] = 1; // with a null count Arrow would use the short bitmap as is
        }), "needs 2 bytes");
        assertField("arrow buffer 10", corrupt(b -> b.buffers.get(10)[1] = 0), "node 4 (length 8) needs 1 bytes");
        assertField("arrow buffer 11", corrupt(b ->
        {
            b.nodes.get(5)[0] = Integer.MAX_VALUE;
            b.buffers.get(11)[1] = 0;
        }), "needs 268435456 bytes");
        assertField("arrow buffer 20", corrupt(b -> b.buffers.get(20)[1] = 0), "node 8 (length 9) needs 2 bytes");
    }

    @Test
    void aTruncatedFlatbuffer()
    {
        final byte[] fb = flatbuffer(valid);
        assertField("arrow flatbuffer", corrupt(java.util.Arrays.copyOf(fb, 8), valid.body, valid.rowCount));
        assertField("arrow flatbuffer", corrupt(java.util.Arrays.copyOf(fb, 16), valid.body, valid.rowCount));
        // Every shorter prefix (8-byte steps, as meta_length must be): corrupt, or (if only
        // padding was cut) the same valid batch; never anything else.
        int failed = 0;
        for (int n = 0; n < fb.length; n += 8)
        {
            final Outcome o = attempt(java.util.Arrays.copyOf(fb, n), valid.body, valid.rowCount);
            if (o.failure != null)
            {
                failed++;
            }
            else
            {
                assertEquals(valid.rowCount, o.rows, "a truncation to " + n + " of " + fb.length + " bytes loaded");
            }
        }
        assertTrue(failed >= fb.length / 8 - 1, failed + " of " + (fb.length / 8) + " truncations failed");
    }

    @Test
    void garbageMetadataBytes()
    {
        final byte[] fb = flatbuffer(valid);
        final Random random = new Random(20240601);
        // Random bytes of the right length: never a valid batch.
        for (int i = 0; i < 200; i++)
        {
            final byte[] garbage = new byte[fb.length];
            random.nextBytes(garbage);
            corrupt(garbage, valid.body, valid.rowCount);
        }
        // All zeros, all ones.
        corrupt(new byte[fb.length], valid.body, valid.rowCount);
        final byte[] ones = new byte[fb.length];
        java.util.Arrays.fill(ones, (byte)0xFF);
        corrupt(ones, valid.body, valid.rowCount);
        // Every single byte of the valid flatbuffer flipped: a CORRUPT_RECORD or a batch whose
        // every value reads within bounds (a flip in a field Java does not use), nothing else.
        int failed = 0;
        for (int i = 0; i < fb.length; i++)
        {
            final byte[] flipped = fb.clone();
            flipped[i] ^= (byte)(1 + random.nextInt(255));
            if (attempt(flipped, valid.body, valid.rowCount).failure != null)
            {
                failed++;
            }
        }
        assertTrue(failed > fb.length / 4, failed + " of " + fb.length + " single-byte flips failed");
    }
}
