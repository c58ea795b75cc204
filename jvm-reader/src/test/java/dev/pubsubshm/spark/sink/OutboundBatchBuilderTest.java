package dev.pubsubshm.spark.sink;

import java.io.ByteArrayInputStream;
import java.nio.channels.Channels;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.stream.Stream;

import org.apache.arrow.memory.BufferAllocator;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorLoader;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.MapVector;
import org.apache.arrow.vector.complex.StructVector;
import org.apache.arrow.vector.ipc.ReadChannel;
import org.apache.arrow.vector.ipc.message.ArrowRecordBatch;
import org.apache.arrow.vector.ipc.message.MessageSerializer;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.FieldType;
import org.apache.arrow.vector.types.pojo.Schema;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.GenericInternalRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.apache.spark.sql.catalyst.util.ArrayBasedMapData;
import org.apache.spark.sql.catalyst.util.GenericArrayData;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.OutboundTestRings;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * The OUTBOUND batches the sink builds in place, read back by Arrow Java's own IPC reader (an
 * independent decoder): every value of every row, from UnsafeRows (the zero-allocation path)
 * and from generic rows, batch bounds by rows, bytes and single large rows, the rows Pub/Sub
 * would refuse, and back-pressure on a full ring.
 */
class OutboundBatchBuilderTest
{
    static final StructType SCHEMA = new StructType()
        .add("data", DataTypes.BinaryType, false)
        .add("attributes", DataTypes.createMapType(DataTypes.StringType, DataTypes.StringType, true), true)
        .add("ordering_key", DataTypes.StringType, true);

    /** The OUTBOUND schema of FORMAT.md section 6, in Arrow Java. */
    static final Schema ARROW_SCHEMA = new Schema(List.of(
        new Field("data", FieldType.notNullable(ArrowType.Binary.INSTANCE), null),
        new Field("attributes", FieldType.notNullable(new ArrowType.Map(false)), List.of(
            new Field("entries", FieldType.notNullable(ArrowType.Struct.INSTANCE), List.of(
                new Field("key", FieldType.notNullable(ArrowType.Utf8.INSTANCE), null),
                new Field("value", FieldType.nullable(ArrowType.Utf8.INSTANCE), null))))),
        new Field("ordering_key", FieldType.nullable(ArrowType.Utf8.INSTANCE), null)));

    record Msg(byte[] data, Map<String, String> attrs, String key)
    {
    }

    private Path dir;
    private RingFile ring;
    private long expectedId = 1;

    @BeforeEach
    void createRing() throws Exception
    {
        dir = Files.createTempDirectory(Path.of("/dev/shm"), "pubsub-shm-sink-test-",
            PosixFilePermissions.asFileAttribute(PosixFilePermissions.fromString("rwx------")));
        ring = RingFile.open(OutboundTestRings.createOutbound(dir, "outbound-1.ring", 1, 4 << 20));
    }

    @AfterEach
    void removeRing() throws Exception
    {
        ring.close();
        try (Stream<Path> s = Files.walk(dir))
        {
            s.sorted(Comparator.reverseOrder()).forEach(p -> p.toFile().delete());
        }
    }

    static Msg msg(final int i)
    {
        final StringBuilder sb = new StringBuilder("m-").append(i).append('|');
        for (int j = 0; j < (i * 37) % 300; j++)
        {
            sb.append((char)('a' + (i + j) % 26));
        }
        Map<String, String> attrs = null;
        if (i % 4 != 0)
        {
            attrs = new HashMap<>();
            attrs.put("i", Integer.toString(i));
            if (i % 3 == 0)
            {
                attrs.put("ü-key", "värde " + i);
                attrs.put("empty", "");
            }
        }
        final String key = i % 5 == 0 ? null : i % 7 == 0 ? "" : "key-" + (i % 11);
        return new Msg(sb.toString().getBytes(StandardCharsets.UTF_8), attrs, key);
    }

    static InternalRow generic(final Msg m)
    {
        Object map = null;
        if (m.attrs() != null)
        {
            final Object[] ks = new Object[m.attrs().size()];
            final Object[] vs = new Object[ks.length];
            int k = 0;
            for (final Map.Entry<String, String> e : m.attrs().entrySet())
            {
                ks[k] = UTF8String.fromString(e.getKey());
                vs[k++] = e.getValue() == null ? null : UTF8String.fromString(e.getValue());
            }
            map = new ArrayBasedMapData(new GenericArrayData(ks), new GenericArrayData(vs));
        }
        return new GenericInternalRow(new Object[] {m.data(), map, m.key() == null ? null : UTF8String.fromString(m.key())});
    }

    private OutboundBatchBuilder builder(final String batchRows, final String batchBytes,
        final OutboundBatchBuilder.SpaceWaiter waiter)
    {
        final SinkOptions o = SinkOptions.parse(Map.of("projectId", "p", "topicId", "topic", "ringRoot", dir.toString(),
            "batchRows", batchRows, "batchBytes", batchBytes, "lingerMs", "0"), Map.of());
        return new OutboundBatchBuilder(new OutboundRing(ring), InputColumns.resolve(SCHEMA), false, o, waiter);
    }

    /** Reads every record of the ring and decodes it with Arrow Java. */
    private List<List<Msg>> readBatches()
    {
        final List<List<Msg>> out = new ArrayList<>();
        try (DataRingReader reader = new DataRingReader(ring); BufferAllocator alloc = new RootAllocator())
        {
            final DataRecord rec = new DataRecord();
            while (reader.poll(rec))
            {
                assertEquals(RingDescriptor.TYPE_ARROW, rec.type());
                assertEquals(expectedId++, rec.batchId());
                final byte[] bytes = new byte[rec.metaLength() + (int)rec.bodyLength()];
                final var meta = rec.metaBuffer();
                meta.get(meta.position(), bytes, 0, rec.metaLength());
                final var body = rec.bodyBuffer();
                body.get(body.position(), bytes, rec.metaLength(), (int)rec.bodyLength());
                try (ArrowRecordBatch rb = MessageSerializer.deserializeRecordBatch(
                    new ReadChannel(Channels.newChannel(new ByteArrayInputStream(bytes))), alloc);
                     VectorSchemaRoot root = VectorSchemaRoot.create(ARROW_SCHEMA, alloc))
                {
                    new VectorLoader(root).load(rb);
                    assertEquals(rec.rowCount(), root.getRowCount());
                    final VarBinaryVector data = (VarBinaryVector)root.getVector(0);
                    final MapVector attrs = (MapVector)root.getVector(1);
                    final StructVector entries = (StructVector)attrs.getDataVector();
                    final VarCharVector keys = (VarCharVector)entries.getChild("key");
                    final VarCharVector values = (VarCharVector)entries.getChild("value");
                    final VarCharVector ok = (VarCharVector)root.getVector(2);
                    final List<Msg> rows = new ArrayList<>();
                    for (int i = 0; i < root.getRowCount(); i++)
                    {
                        Map<String, String> a = null;
                        final int lo = attrs.getOffsetBuffer().getInt(4L * i);
                        final int hi = attrs.getOffsetBuffer().getInt(4L * (i + 1));
                        if (hi > lo)
                        {
                            a = new HashMap<>();
                            for (int e = lo; e < hi; e++)
                            {
                                a.put(new String(keys.get(e), StandardCharsets.UTF_8), new String(values.get(e), StandardCharsets.UTF_8));
                            }
                        }
                        rows.add(new Msg(data.get(i), a, ok.isNull(i) ? null : new String(ok.get(i), StandardCharsets.UTF_8)));
                    }
                    out.add(rows);
                }
                catch (final java.io.IOException ex)
                {
                    throw new AssertionError(ex);
                }
                reader.release(rec.position());
            }
        }
        return out;
    }

    private static void assertMsg(final Msg want, final Msg got, final int i)
    {
        assertArrayEquals(want.data(), got.data(), "row " + i + " data");
        assertEquals(want.attrs() == null || want.attrs().isEmpty() ? null : want.attrs(), got.attrs(), "row " + i + " attributes");
        assertEquals(want.key() == null || want.key().isEmpty() ? null : want.key(), got.key(), "row " + i + " ordering key");
    }

    @Test
    void unsafeAndGenericRowsReadBackByArrowJava()
    {
        final OutboundBatchBuilder b = builder("100", "64k", (n, s) -> { throw new AssertionError("ring full"); });
        final UnsafeProjection proj = UnsafeProjection.create(SCHEMA);
        final List<Msg> want = new ArrayList<>();
        for (int i = 0; i < 1000; i++)
        {
            final Msg m = msg(i);
            want.add(m);
            b.append(i % 2 == 0 ? proj.apply(generic(m)) : generic(m));
            if (i % 300 == 299)
            {
                // drain now and then: the ring holds a few batches only
                b.flush();
                check(want, readBatches(), 100, 64 << 10);
                want.clear();
            }
        }
        b.flush();
        check(want, readBatches(), 100, 64 << 10);
        assertEquals(1000, b.totalRows());
    }

    private static void check(final List<Msg> want, final List<List<Msg>> batches, final int maxRows, final long maxBytes)
    {
        int i = 0;
        for (final List<Msg> batch : batches)
        {
            assertTrue(batch.size() <= maxRows, "batch of " + batch.size() + " rows");
            long bytes = 0;
            for (final Msg got : batch)
            {
                assertMsg(want.get(i), got, i);
                bytes += got.data().length;
                i++;
            }
            assertTrue(bytes <= maxBytes, "batch of " + bytes + " payload bytes");
        }
        assertEquals(want.size(), i, "rows read back");
    }

    @Test
    void aLargeRowGoesAloneAndBatchesCloseOnBytes()
    {
        final OutboundBatchBuilder b = builder("4096", "16k", (n, s) -> { throw new AssertionError("ring full"); });
        final UnsafeProjection proj = UnsafeProjection.create(SCHEMA);
        final List<Msg> want = new ArrayList<>();
        final byte[] big = new byte[200_000];
        Arrays.fill(big, (byte)7);
        for (int i = 0; i < 40; i++)
        {
            final Msg m = i == 20 ? new Msg(big, Map.of("big", "yes"), "k") : msg(i);
            want.add(m);
            b.append(proj.apply(generic(m)));
        }
        b.flush();
        final List<List<Msg>> batches = readBatches();
        check(want, batches, 4096, 200_100);
        assertTrue(batches.stream().anyMatch(x -> x.size() == 1 && x.get(0).data().length == big.length),
            "the large row is alone in its batch");
        assertTrue(batches.size() >= 3, batches.size() + " batches");
    }

    @Test
    void rowsPubSubWouldRefuseAreErrors()
    {
        final OutboundBatchBuilder b = builder("100", "64k", (n, s) -> { throw new AssertionError("ring full"); });
        final UnsafeProjection proj = UnsafeProjection.create(SCHEMA);
        final IllegalArgumentException nullData = assertThrows(IllegalArgumentException.class,
            () -> b.append(proj.apply(new GenericInternalRow(new Object[] {null, null, null}))));
        assertTrue(nullData.getMessage().contains("null \"data\""), nullData.getMessage());
        final Map<String, String> withNull = new HashMap<>();
        withNull.put("k", null);
        for (final boolean unsafe : new boolean[] {true, false})
        {
            final InternalRow r = generic(new Msg(new byte[] {1}, withNull, null));
            final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
                () -> b.append(unsafe ? proj.apply(r) : r));
            assertTrue(ex.getMessage().contains("attribute \"k\"") && ex.getMessage().contains("null value"), ex.getMessage());
            final InternalRow empty = generic(new Msg(new byte[0], null, "key"));
            final IllegalArgumentException ex2 = assertThrows(IllegalArgumentException.class,
                () -> b.append(unsafe ? proj.apply(empty) : empty));
            assertTrue(ex2.getMessage().contains("empty \"data\" and no attributes"), ex2.getMessage());
        }
        // empty data with attributes is a valid message
        b.append(proj.apply(generic(new Msg(new byte[0], Map.of("only", "attrs"), null))));
        b.flush();
        assertEquals(1, readBatches().get(0).size());
    }

    @Test
    void aFullRingWaitsForTheConsumer()
    {
        final int[] waits = {0};
        final OutboundBatchBuilder b = builder("4096", "1m", (n, s) ->
        {
            waits[0]++;
            throw new IllegalStateException("gave up waiting for " + n + " bytes");
        });
        final byte[] payload = new byte[1000];
        int appended = 0;
        final IllegalStateException ex = assertThrows(IllegalStateException.class, () ->
        {
            for (int i = 0; ; i++)
            {
                b.append(generic(new Msg(payload, null, null)));
            }
        });
        assertTrue(ex.getMessage().startsWith("gave up waiting"), ex.getMessage());
        assertEquals(1, waits[0]);
        assertTrue(b.batches() >= 2, b.batches() + " batches before the ring was full");
    }

    /**
     * The row path allocates nothing for UnsafeRows, and a batch allocates next to nothing: the
     * sink's heap cost per message does not grow with the number of rows.
     */
    @Test
    void theUnsafeRowPathDoesNotAllocate()
    {
        final OutboundBatchBuilder b = builder("1000", "256k", (n, s) -> { throw new AssertionError("ring full"); });
        final UnsafeProjection proj = UnsafeProjection.create(SCHEMA);
        final InternalRow[] rows = new InternalRow[64];
        for (int i = 0; i < rows.length; i++)
        {
            rows[i] = proj.apply(generic(msg(i))).copy();
        }
        final com.sun.management.ThreadMXBean threads =
            (com.sun.management.ThreadMXBean)java.lang.management.ManagementFactory.getThreadMXBean();
        final long self = Thread.currentThread().getId();
        long measured = 0;
        long appended = 0;
        for (int round = 0; round < 20; round++)
        {
            final long before = threads.getThreadAllocatedBytes(self);
            for (int i = 0; i < 2000; i++)
            {
                b.append(rows[i & 63]);
            }
            b.flush();
            final long after = threads.getThreadAllocatedBytes(self);
            if (round >= 10) // after warm-up (JIT)
            {
                measured += after - before;
                appended += 2000;
            }
            readBatches();
        }
        final double perRow = (double)measured / appended;
        assertTrue(perRow < 1.0, "the row path allocated " + perRow + " bytes per row");
    }

    @Test
    void batchesThatCannotFitTheRingAreRefused()
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class,
            () -> builder("4096", "8m", (n, s) -> { }));
        assertTrue(ex.getMessage().contains("raise ringCapacity"), ex.getMessage());
    }
}
