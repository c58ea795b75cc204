package dev.pubsubshm.arrow;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.List;

import com.google.flatbuffers.FlatBufferBuilder;
import org.apache.arrow.flatbuf.BodyCompression;
import org.apache.arrow.flatbuf.BodyCompressionMethod;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.CompressionType;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.MetadataVersion;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;

import dev.pubsubshm.ring.RingFile;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * Test helpers for the Arrow layer: the Go-written golden ring testdata/golden/data-arrow.ring
 * (ringbuf/arrowbatch/golden_test.go), its batches taken apart into (nodes, buffers, body),
 * a Java writer of ARROW records per FORMAT.md section 3 (so tests can write batches the Go
 * encoder never would: corrupt ones, large ones), and the zero-copy check.
 */
final class ArrowRings
{
    /** Set by surefire; the fallback serves a run from the jvm-reader directory. */
    static final Path GOLDEN_DIR = Path.of(System.getProperty("golden.dir", "../testdata/golden"));
    static final Path GOLDEN_RING = GOLDEN_DIR.resolve("data-arrow.ring");
    static final Path GOLDEN_JSONL = GOLDEN_DIR.resolve("data-arrow.jsonl");

    private ArrowRings()
    {
    }

    /** The message schema of FORMAT.md section 5, as Arrow Java spells it. */
    static Schema messageSchema()
    {
        final FieldType utf8 = FieldType.notNullable(ArrowType.Utf8.INSTANCE);
        return new Schema(List.of(
            new Field("message_id", utf8, null),
            new Field("publish_time", FieldType.notNullable(new ArrowType.Timestamp(TimeUnit.MICROSECOND, "UTC")), null),
            new Field("data", FieldType.notNullable(ArrowType.Binary.INSTANCE), null),
            new Field("attributes", FieldType.notNullable(new ArrowType.Map(false)), List.of(
                new Field("entries", FieldType.notNullable(ArrowType.Struct.INSTANCE), List.of(
                    new Field("key", utf8, null),
                    new Field("value", FieldType.nullable(ArrowType.Utf8.INSTANCE), null))))),
            new Field("ordering_key", FieldType.nullable(ArrowType.Utf8.INSTANCE), null),
            new Field("delivery_attempt", FieldType.nullable(new ArrowType.Int(32, true)), null)));
    }

    /** Copies a file into {@code dir} with mode 0600 (git does not keep modes; openers refuse group/other bits). */
    static Path copyPrivate(final Path source, final Path dir, final String name)
    {
        try
        {
            final Path target = dir.resolve(name);
            Files.copy(source, target, StandardCopyOption.REPLACE_EXISTING);
            Files.setPosixFilePermissions(target, PosixFilePermissions.fromString("rw-------"));
            return target;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    static Path copyGolden(final Path dir)
    {
        return copyPrivate(GOLDEN_RING, dir, "data-0.ring");
    }

    // ---------------------------------------------------------------------------------
    // Batches taken apart, and put back together.
    // ---------------------------------------------------------------------------------

    /**
     * The Arrow content of one ARROW record, mutable so tests can break one rule at a time:
     * the record header's {@code row_count}, the flatbuffer's RecordBatch {@code length},
     * field nodes {@code (length, null_count)}, buffers {@code (offset, length)}, the
     * flatbuffer's {@code bodyLength} and the body bytes.
     */
    static final class Batch
    {
        int rowCount;
        long length;
        final List<long[]> nodes = new ArrayList<>();
        final List<long[]> buffers = new ArrayList<>();
        long bodyLength;
        byte[] body;
        byte headerType = MessageHeader.RecordBatch;
        boolean compressed;

        Batch copy()
        {
            final Batch b = new Batch();
            b.rowCount = rowCount;
            b.length = length;
            nodes.forEach(n -> b.nodes.add(n.clone()));
            buffers.forEach(x -> b.buffers.add(x.clone()));
            b.bodyLength = bodyLength;
            b.body = body.clone();
            b.headerType = headerType;
            b.compressed = compressed;
            return b;
        }

        /** Writes a little-endian int into the body at {@code offset} within buffer {@code buffer}. */
        void putBodyInt(final int buffer, final int index, final int value)
        {
            final long[] buf = buffers.get(buffer);
            if (4L * index + 4 > buf[1])
            {
                throw new IllegalArgumentException("int " + index + " is outside buffer " + buffer + " of " + buf[1] + " bytes");
            }
            ByteBuffer.wrap(body).order(ByteOrder.LITTLE_ENDIAN).putInt((int)(buf[0] + 4L * index), value);
        }

        int bodyInt(final int buffer, final int index)
        {
            return ByteBuffer.wrap(body).order(ByteOrder.LITTLE_ENDIAN).getInt((int)(buffers.get(buffer)[0] + 4L * index));
        }
    }

    /** Buffer indexes of the message schema in IPC order (depth first; validity, offsets, data). */
    static final int BUF_MESSAGE_ID_OFFSETS = 1;
    static final int BUF_MESSAGE_ID_DATA = 2;
    static final int BUF_DATA_OFFSETS = 6;
    static final int BUF_DATA_DATA = 7;
    static final int BUF_ATTRIBUTES_OFFSETS = 9;
    static final int BUF_KEY_OFFSETS = 12;
    static final int BUF_KEY_DATA = 13;
    static final int BUF_DELIVERY_ATTEMPT_DATA = 21;
    static final int BUFFER_COUNT = 22;
    static final int NODE_COUNT = 9;

    /** The ARROW records of the golden ring, in order, taken apart. */
    static List<Batch> goldenBatches()
    {
        final ByteBuffer file;
        try
        {
            file = ByteBuffer.wrap(Files.readAllBytes(GOLDEN_RING)).order(ByteOrder.LITTLE_ENDIAN);
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
        final int headerLength = file.getInt(HEADER_LENGTH_OFFSET);
        final long capacity = file.getLong(CAPACITY_OFFSET);
        final List<Batch> out = new ArrayList<>();
        for (long p = file.getLong(HEAD_POSITION_OFFSET); p < file.getLong(TAIL_POSITION_OFFSET); )
        {
            final int off = (int)(headerLength + (p & (capacity - 1)));
            final int length = file.getInt(off + RECORD_LENGTH_OFFSET);
            if (file.getInt(off + RECORD_TYPE_OFFSET) == TYPE_ARROW)
            {
                final int metaLength = file.getInt(off + RECORD_META_LENGTH_OFFSET);
                final int bodyOffset = file.getInt(off + RECORD_BODY_OFFSET_OFFSET);
                final int bodyLength = (int)file.getLong(off + RECORD_BODY_LENGTH_OFFSET);
                final ByteBuffer fb = file.duplicate().order(ByteOrder.LITTLE_ENDIAN);
                fb.position(off + RECORD_HEADER_LENGTH + 8).limit(off + RECORD_HEADER_LENGTH + metaLength);
                final Message msg = Message.getRootAsMessage(fb.slice().order(ByteOrder.LITTLE_ENDIAN));
                final RecordBatch rb = (RecordBatch)msg.header(new RecordBatch());
                final Batch b = new Batch();
                b.rowCount = file.getInt(off + RECORD_ROW_COUNT_OFFSET);
                b.length = rb.length();
                for (int i = 0; i < rb.nodesLength(); i++)
                {
                    final FieldNode n = rb.nodes(i);
                    b.nodes.add(new long[] {n.length(), n.nullCount()});
                }
                for (int i = 0; i < rb.buffersLength(); i++)
                {
                    final Buffer x = rb.buffers(i);
                    b.buffers.add(new long[] {x.offset(), x.length()});
                }
                b.bodyLength = msg.bodyLength();
                b.body = new byte[bodyLength];
                file.get(off + bodyOffset, b.body);
                out.add(b);
            }
            p += align64(length);
        }
        return out;
    }

    /** The flatbuffer Message (V5, RecordBatch header) describing {@code b}. */
    static byte[] flatbuffer(final Batch b)
    {
        final FlatBufferBuilder fb = new FlatBufferBuilder(1024);
        RecordBatch.startNodesVector(fb, b.nodes.size());
        for (int i = b.nodes.size() - 1; i >= 0; i--)
        {
            FieldNode.createFieldNode(fb, b.nodes.get(i)[0], b.nodes.get(i)[1]);
        }
        final int nodes = fb.endVector();
        RecordBatch.startBuffersVector(fb, b.buffers.size());
        for (int i = b.buffers.size() - 1; i >= 0; i--)
        {
            Buffer.createBuffer(fb, b.buffers.get(i)[0], b.buffers.get(i)[1]);
        }
        final int buffers = fb.endVector();
        final int compression = b.compressed ? BodyCompression.createBodyCompression(fb, CompressionType.LZ4_FRAME, BodyCompressionMethod.BUFFER) : 0;
        RecordBatch.startRecordBatch(fb);
        RecordBatch.addLength(fb, b.length);
        RecordBatch.addNodes(fb, nodes);
        RecordBatch.addBuffers(fb, buffers);
        if (b.compressed)
        {
            RecordBatch.addCompression(fb, compression);
        }
        final int header = RecordBatch.endRecordBatch(fb);
        final int message = Message.createMessage(fb, MetadataVersion.V5, b.headerType, header, b.bodyLength, 0);
        fb.finish(message);
        return fb.sizedByteArray();
    }

    /**
     * A batch of the message schema built byte by byte as FORMAT.md section 5 lays it out
     * (explicit validity bitmaps, int32 offsets from 0, every buffer on 64 bytes), with
     * deterministic contents: row {@code i} has message_id {@code "m-<i>"}, publish_time
     * {@code 1_700_000_000_000_000 + i}, {@code payloadSize} bytes of data
     * ({@code (i * 31 + j) & 0xFF}), {@code i % 3} attributes {@code "k<e>" -> "v<i>.<e>"}
     * (the value of entry 1 null when {@code i % 7 == 0}), ordering_key {@code "key-<i % 10>"}
     * or null for even rows, delivery_attempt {@code i % 100} or null when {@code i % 5 == 0}.
     */
    static Batch messageBatch(final int rows, final int payloadSize)
    {
        final Body body = new Body();
        final List<long[]> nodes = new ArrayList<>();
        final boolean[] all = new boolean[rows];
        java.util.Arrays.fill(all, true);

        final List<byte[]> ids = new ArrayList<>();
        final List<byte[]> payloads = new ArrayList<>();
        final List<byte[]> keys = new ArrayList<>();
        final List<byte[]> values = new ArrayList<>();
        final List<Boolean> valueValid = new ArrayList<>();
        final int[] mapOffsets = new int[rows + 1];
        final byte[][] orderingKeys = new byte[rows][];
        final boolean[] orderingValid = new boolean[rows];
        final boolean[] attemptValid = new boolean[rows];
        final ByteBuffer times = ByteBuffer.allocate(8 * rows).order(ByteOrder.LITTLE_ENDIAN);
        final ByteBuffer attempts = ByteBuffer.allocate(4 * rows).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < rows; i++)
        {
            ids.add(("m-" + i).getBytes(java.nio.charset.StandardCharsets.UTF_8));
            times.putLong(8 * i, 1_700_000_000_000_000L + i);
            final byte[] p = new byte[payloadSize];
            for (int j = 0; j < payloadSize; j++)
            {
                p[j] = (byte)(i * 31 + j);
            }
            payloads.add(p);
            for (int e = 0; e < i % 3; e++)
            {
                keys.add(("k" + e).getBytes(java.nio.charset.StandardCharsets.UTF_8));
                final boolean valid = !(e == 1 && i % 7 == 0);
                valueValid.add(valid);
                values.add(valid ? ("v" + i + "." + e).getBytes(java.nio.charset.StandardCharsets.UTF_8) : new byte[0]);
            }
            mapOffsets[i + 1] = keys.size();
            orderingValid[i] = i % 2 != 0;
            orderingKeys[i] = orderingValid[i] ? ("key-" + i % 10).getBytes(java.nio.charset.StandardCharsets.UTF_8) : new byte[0];
            attemptValid[i] = i % 5 != 0;
            attempts.putInt(4 * i, attemptValid[i] ? i % 100 : 0);
        }
        final int entries = keys.size();
        final boolean[] entryAll = new boolean[entries];
        java.util.Arrays.fill(entryAll, true);
        final boolean[] valuesValid = new boolean[entries];
        for (int e = 0; e < entries; e++)
        {
            valuesValid[e] = valueValid.get(e);
        }

        body.varWidth(nodes, all, ids);                                   // message_id
        nodes.add(new long[] {rows, 0});                                   // publish_time
        body.add(validity(all));
        body.add(times.array());
        body.varWidth(nodes, all, payloads);                               // data
        nodes.add(new long[] {rows, 0});                                   // attributes
        body.add(validity(all));
        body.add(ints(mapOffsets));
        nodes.add(new long[] {entries, 0});                                // entries
        body.add(validity(entryAll));
        body.varWidth(nodes, entryAll, keys);                              // key
        body.varWidth(nodes, valuesValid, values);                         // value
        body.varWidth(nodes, orderingValid, java.util.Arrays.asList(orderingKeys)); // ordering_key
        nodes.add(new long[] {rows, nulls(attemptValid)});                 // delivery_attempt
        body.add(validity(attemptValid));
        body.add(attempts.array());

        final Batch b = new Batch();
        b.rowCount = rows;
        b.length = rows;
        b.nodes.addAll(nodes);
        b.buffers.addAll(body.buffers);
        b.body = body.bytes();
        b.bodyLength = b.body.length;
        return b;
    }

    /** A body under construction: every buffer starts on 64 bytes. */
    private static final class Body
    {
        final List<long[]> buffers = new ArrayList<>();
        private final java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();

        void add(final byte[] bytes)
        {
            while (out.size() % RECORD_ALIGNMENT != 0)
            {
                out.write(0);
            }
            buffers.add(new long[] {out.size(), bytes.length});
            out.write(bytes, 0, bytes.length);
        }

        /** Node, validity, offsets and data of a utf8/binary column. */
        void varWidth(final List<long[]> nodes, final boolean[] valid, final List<byte[]> values)
        {
            nodes.add(new long[] {values.size(), nulls(valid)});
            add(validity(valid));
            final int[] offsets = new int[values.size() + 1];
            final java.io.ByteArrayOutputStream data = new java.io.ByteArrayOutputStream();
            for (int i = 0; i < values.size(); i++)
            {
                data.write(values.get(i), 0, values.get(i).length);
                offsets[i + 1] = data.size();
            }
            add(ints(offsets));
            add(data.toByteArray());
        }

        byte[] bytes()
        {
            while (out.size() % RECORD_ALIGNMENT != 0)
            {
                out.write(0);
            }
            return out.toByteArray();
        }
    }

    private static byte[] validity(final boolean[] valid)
    {
        final byte[] bits = new byte[(valid.length + 7) / 8];
        for (int i = 0; i < valid.length; i++)
        {
            if (valid[i])
            {
                bits[i >> 3] |= (byte)(1 << (i & 7));
            }
        }
        return bits;
    }

    private static long nulls(final boolean[] valid)
    {
        long n = 0;
        for (final boolean v : valid)
        {
            n += v ? 0 : 1;
        }
        return n;
    }

    private static byte[] ints(final int[] values)
    {
        final ByteBuffer b = ByteBuffer.allocate(4 * values.length).order(ByteOrder.LITTLE_ENDIAN);
        for (final int v : values)
        {
            b.putInt(v);
        }
        return b.array();
    }

    // ---------------------------------------------------------------------------------
    // Ring files and an in-process producer.
    // ---------------------------------------------------------------------------------

    /**
     * Creates {@code dir/name}: a DATA ring with the golden file's header (schema included)
     * but the given capacity, empty (head = tail = 0), no producer attached, mode 0600.
     */
    static Path createRing(final Path dir, final String name, final long capacity)
    {
        try
        {
            final byte[] golden = Files.readAllBytes(GOLDEN_RING);
            final ByteBuffer g = ByteBuffer.wrap(golden).order(ByteOrder.LITTLE_ENDIAN);
            final int headerLength = g.getInt(HEADER_LENGTH_OFFSET);
            final ByteBuffer header = ByteBuffer.allocate(headerLength).order(ByteOrder.LITTLE_ENDIAN);
            header.put(0, golden, 0, headerLength);
            header.putLong(CAPACITY_OFFSET, capacity);
            header.putLong(FILE_LENGTH_OFFSET, headerLength + capacity);
            header.putInt(MAX_RECORD_LENGTH_OFFSET, (int)maxRecordLengthFor(KIND_DATA, capacity));
            for (int off = PRODUCER_PID_OFFSET; off < PRODUCER_IDENTITY_OFFSET + IDENTITY_LENGTH; off += SIZE_OF_LONG)
            {
                header.putLong(off, 0);
            }
            header.putLong(TAIL_POSITION_OFFSET, 0);
            header.putLong(HEAD_POSITION_OFFSET, 0);
            final Path path = dir.resolve(name);
            try (FileChannel ch = FileChannel.open(path, StandardOpenOption.CREATE_NEW, StandardOpenOption.WRITE))
            {
                Files.setPosixFilePermissions(path, PosixFilePermissions.fromString("rw-------"));
                ch.write(header, 0);
                ch.write(ByteBuffer.allocate(1), headerLength + capacity - 1);
            }
            return path;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException(ex);
        }
    }

    /**
     * Writes ARROW records into an open ring the way pullerd does (FORMAT.md section 3,
     * publication protocol, PADDING at the wrap), in the test's thread. It does not wait for
     * space: a full ring is an {@link IllegalStateException} (release what was read first).
     */
    static final class Producer
    {
        private final RingFile ring;
        private long batchId = 1;

        Producer(final RingFile ring)
        {
            this.ring = ring;
        }

        /** Writes {@code b} with a freshly encoded flatbuffer; returns the record's position. */
        long write(final Batch b)
        {
            return write(flatbuffer(b), b.body, b.rowCount);
        }

        /**
         * Writes an ARROW record whose encapsulated message holds {@code flatbuffer} (padded
         * with zeros to 8) and whose body is {@code body}.
         */
        long write(final byte[] flatbuffer, final byte[] body, final int rowCount)
        {
            final int metaLength = 8 + (int)align(flatbuffer.length, 8);
            final int bodyOffset = (int)align64(RECORD_HEADER_LENGTH + metaLength);
            final int length = bodyOffset + body.length;
            final long aligned = align64(length);
            if (aligned > ring.maxRecordLength())
            {
                throw new IllegalArgumentException("record of " + length + " bytes > max_record_length " + ring.maxRecordLength());
            }
            final long capacity = ring.capacity();
            long tail = ring.tailPosition();
            if ((tail & (capacity - 1)) + aligned > capacity)
            {
                // The record does not fit before the end of the ring area: pad to the end.
                final long gap = capacity - (tail & (capacity - 1));
                requireRoom(tail, gap + aligned);
                final int off = ring.offsetOf(tail);
                ring.putInt(off + RECORD_STATE_OFFSET, STATE_RELEASED);
                ring.putIntRelease(off + RECORD_LENGTH_OFFSET, -(int)gap);
                ring.putLongRelease(TAIL_POSITION_OFFSET, tail + gap);
                ring.putInt(off + RECORD_TYPE_OFFSET, TYPE_PADDING);
                ring.putLong(off + RECORD_BATCH_ID_OFFSET, 0);
                ring.putLong(off + RECORD_POSITION_OFFSET, tail);
                ring.putIntRelease(off + RECORD_LENGTH_OFFSET, (int)gap);
                tail += gap;
            }
            requireRoom(tail, aligned);
            final int off = ring.offsetOf(tail);
            ring.putInt(off + RECORD_STATE_OFFSET, 0);
            ring.putIntRelease(off + RECORD_LENGTH_OFFSET, -length);
            ring.putLongRelease(TAIL_POSITION_OFFSET, tail + aligned);
            ring.putInt(off + RECORD_TYPE_OFFSET, TYPE_ARROW);
            ring.putLong(off + RECORD_BATCH_ID_OFFSET, batchId++);
            ring.putInt(off + RECORD_ROW_COUNT_OFFSET, rowCount);
            ring.putInt(off + RECORD_META_OFFSET_OFFSET, RECORD_HEADER_LENGTH);
            ring.putInt(off + RECORD_META_LENGTH_OFFSET, metaLength);
            ring.putInt(off + RECORD_BODY_OFFSET_OFFSET, bodyOffset);
            ring.putInt(off + RECORD_RESERVED_OFFSET, 0);
            ring.putLong(off + RECORD_BODY_LENGTH_OFFSET, body.length);
            ring.putLong(off + RECORD_PRODUCED_UNIX_NS_OFFSET, System.currentTimeMillis() * 1_000_000L);
            ring.putLong(off + RECORD_POSITION_OFFSET, tail);
            final ByteBuffer mem = ring.duplicateBuffer().order(ByteOrder.LITTLE_ENDIAN);
            mem.putInt(off + RECORD_HEADER_LENGTH, ARROW_CONTINUATION);
            mem.putInt(off + RECORD_HEADER_LENGTH + 4, metaLength - 8);
            mem.put(off + RECORD_HEADER_LENGTH + 8, flatbuffer);
            for (int i = RECORD_HEADER_LENGTH + 8 + flatbuffer.length; i < bodyOffset; i++)
            {
                mem.put(off + i, (byte)0);
            }
            mem.put(off + bodyOffset, body);
            ring.putIntRelease(off + RECORD_LENGTH_OFFSET, length);
            return tail;
        }

        private void requireRoom(final long tail, final long bytes)
        {
            if (tail + bytes - ring.headPosition() > ring.capacity())
            {
                throw new IllegalStateException("test ring full: " + bytes + " bytes at tail=" + tail + ", head=" + ring.headPosition() +
                    ", capacity=" + ring.capacity() + " (release what was read first)");
            }
        }
    }

    // ---------------------------------------------------------------------------------
    // Zero copy.
    // ---------------------------------------------------------------------------------

    /**
     * Asserts that every buffer of every vector of {@code root}, children included, lies
     * inside the ring's mapping {@code [address, address + file_length)}, validity buffers
     * included (so Arrow allocated no replacement bitmap). A vector of zero values may hold
     * Arrow's shared empty buffer (capacity 0: no memory, nothing copied).
     *
     * @return the number of non-empty buffers checked.
     */
    static int assertZeroCopy(final RingFile ring, final VectorSchemaRoot root)
    {
        int checked = 0;
        for (final FieldVector v : root.getFieldVectors())
        {
            checked += assertZeroCopy(ring, v);
        }
        return checked;
    }

    private static int assertZeroCopy(final RingFile ring, final FieldVector v)
    {
        final long start = ring.address();
        final long end = start + ring.fileLength();
        int checked = 0;
        final List<ArrowBuf> buffers = new ArrayList<>(v.getFieldBuffers());
        final ArrowBuf validity = v.getValidityBuffer();
        assertTrue(buffers.contains(validity), "vector " + v.getName() + ": its validity buffer is one of its field buffers");
        for (final ArrowBuf b : buffers)
        {
            final String what = "vector " + v.getName() + " (" + v.getValueCount() + " values) buffer " +
                (b == validity ? "validity" : "#" + buffers.indexOf(b)) + " at 0x" + Long.toHexString(b.memoryAddress()) +
                "+" + b.capacity() + ", mapping 0x" + Long.toHexString(start) + "..0x" + Long.toHexString(end);
            if (b.capacity() == 0)
            {
                if (v.getValueCount() != 0 && b == validity)
                {
                    fail(what + ": an empty validity buffer for a non-empty vector");
                }
                continue;
            }
            if (b.memoryAddress() < start || b.memoryAddress() + b.capacity() > end)
            {
                fail(what + ": outside the ring mapping (copied or allocated by Arrow)");
            }
            checked++;
        }
        for (final FieldVector c : v.getChildrenFromFields())
        {
            checked += assertZeroCopy(ring, c);
        }
        return checked;
    }
}
