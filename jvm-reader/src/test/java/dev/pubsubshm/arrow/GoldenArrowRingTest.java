package dev.pubsubshm.arrow;

import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.function.LongConsumer;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import org.apache.arrow.memory.RootAllocator;
import org.apache.arrow.vector.FieldVector;
import org.apache.arrow.vector.IntVector;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;
import org.apache.arrow.vector.complex.MapVector;
import org.apache.arrow.vector.complex.StructVector;
import org.apache.arrow.vector.types.TimeUnit;
import org.apache.arrow.vector.types.pojo.ArrowType;
import org.apache.arrow.vector.types.pojo.Field;
import org.apache.arrow.vector.types.pojo.Schema;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.RingFile;

import static dev.pubsubshm.ring.RingDescriptor.KIND_DATA;
import static dev.pubsubshm.ring.RingDescriptor.TYPE_ARROW;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Reads the Go-written testdata/golden/data-arrow.ring (ringbuf/arrowbatch/golden_test.go)
 * through {@link DataRingReader} and {@link RingBatchLoader} and checks the schema in its
 * header, every field of every row against data-arrow.jsonl (nulls exactly where the jsonl
 * has null, map entries in the order written), and that every loaded buffer lies inside the
 * ring mapping (zero copy).
 */
class GoldenArrowRingTest
{
    @TempDir
    Path dir;

    static List<JsonNode> expectedRows() throws Exception
    {
        final ObjectMapper json = new ObjectMapper();
        final List<JsonNode> rows = new ArrayList<>();
        for (final String line : Files.readAllLines(ArrowRings.GOLDEN_JSONL, StandardCharsets.UTF_8))
        {
            if (!line.isBlank())
            {
                rows.add(json.readTree(line));
            }
        }
        return rows;
    }

    static List<JsonNode> rowsOf(final List<JsonNode> rows, final long batchId)
    {
        final List<JsonNode> out = new ArrayList<>();
        for (final JsonNode r : rows)
        {
            if (r.get("batch_id").asLong() == batchId)
            {
                assertEquals(out.size(), r.get("row").asInt(), "jsonl rows of batch " + batchId + " are in order");
                out.add(r);
            }
        }
        return out;
    }

    @Test
    void theSchemaInTheHeaderIsTheMessageSchema()
    {
        final Path copy = ArrowRings.copyGolden(dir);
        try (RingFile ring = RingFile.open(copy, RingFile.OpenOptions.defaults().kind(KIND_DATA));
             RootAllocator allocator = new RootAllocator();
             RingBatchLoader loader = new RingBatchLoader(ring, allocator, true))
        {
            final Schema schema = loader.schema();
            assertEquals(ArrowRings.messageSchema(), schema, "the header's schema, as Arrow Java reads it");

            // The same, rule by rule, so a difference names the rule.
            final List<Field> f = schema.getFields();
            assertEquals(List.of("message_id", "publish_time", "data", "attributes", "ordering_key", "delivery_attempt"),
                f.stream().map(Field::getName).toList());
            assertEquals(List.of(false, false, false, false, true, true), f.stream().map(Field::isNullable).toList(), "nullability");
            assertEquals(ArrowType.Utf8.INSTANCE, f.get(0).getType());
            final ArrowType.Timestamp ts = (ArrowType.Timestamp)f.get(1).getType();
            assertEquals(TimeUnit.MICROSECOND, ts.getUnit());
            assertEquals("UTC", ts.getTimezone());
            assertEquals(ArrowType.Binary.INSTANCE, f.get(2).getType());
            assertEquals(new ArrowType.Map(false), f.get(3).getType());
            final Field entries = f.get(3).getChildren().get(0);
            assertEquals(ArrowType.Struct.INSTANCE, entries.getType());
            assertFalse(entries.isNullable(), "map entries are not nullable");
            assertEquals("key", entries.getChildren().get(0).getName());
            assertEquals(ArrowType.Utf8.INSTANCE, entries.getChildren().get(0).getType());
            assertFalse(entries.getChildren().get(0).isNullable(), "map keys are not nullable");
            assertEquals("value", entries.getChildren().get(1).getName());
            assertEquals(ArrowType.Utf8.INSTANCE, entries.getChildren().get(1).getType());
            assertTrue(entries.getChildren().get(1).isNullable(), "map values are nullable");
            assertEquals(ArrowType.Utf8.INSTANCE, f.get(4).getType());
            assertEquals(new ArrowType.Int(32, true), f.get(5).getType());
        }
    }

    @Test
    void everyFieldOfEveryRowEqualsTheJsonlAndEveryBufferLiesInTheMapping() throws Exception
    {
        final List<JsonNode> expected = expectedRows();
        final Path copy = ArrowRings.copyGolden(dir);
        try (RingFile ring = RingFile.open(copy, RingFile.OpenOptions.defaults().kind(KIND_DATA));
             RootAllocator allocator = new RootAllocator();
             DataRingReader reader = new DataRingReader(ring);
             RingBatchLoader loader = new RingBatchLoader(ring, allocator, true))
        {
            final List<Long> released = new ArrayList<>();
            final LongConsumer release = position ->
            {
                released.add(position);
                reader.release(position);
            };
            final DataRecord record = new DataRecord();
            final List<Long> positions = new ArrayList<>();
            final List<Long> batchIds = new ArrayList<>();
            int rows = 0;
            while (reader.poll(record))
            {
                assertEquals(TYPE_ARROW, record.type(), record.toString());
                positions.add(record.position());
                batchIds.add(record.batchId());
                loader.load(record, release);
                final VectorSchemaRoot root = loader.root();
                final List<JsonNode> want = rowsOf(expected, record.batchId());
                assertFalse(want.isEmpty(), "the jsonl has rows of batch " + record.batchId());
                assertEquals(want.size(), record.rowCount(), "row_count of batch " + record.batchId());
                assertBatchEquals(want, root, "batch " + record.batchId());
                rows += root.getRowCount();

                // Zero copy: every buffer points into the mapping, and the loader's allocator
                // is charged exactly the one live record body (nothing else was allocated).
                final int buffers = ArrowRings.assertZeroCopy(ring, root);
                assertTrue(buffers >= 14, "non-empty buffers checked in batch " + record.batchId() + ": " + buffers);
                assertEquals(record.bodyLength(), loader.allocator().getAllocatedMemory(),
                    "allocator bytes = the live record body (batch " + record.batchId() + ")");
                assertEquals(positions.subList(0, positions.size() - 1), released,
                    "loading a record released the previous one, once");
            }
            assertEquals(List.of(1L, 2L, 3L), batchIds, "the golden ring holds three ARROW records");
            assertEquals(expected.size(), rows, "every jsonl row was read");
            loader.clear();
            assertEquals(positions, released, "every record released once, in order");
            assertEquals(ring.tailPosition(), ring.headPosition(), "head advanced to tail");
            assertEquals(0, loader.allocator().getAllocatedMemory());
        }
    }

    @Test
    void theGoldenBatchesRewrittenByTheJavaTestWriterReadTheSame() throws Exception
    {
        // Checks the test writer (ArrowRings) that the corrupt-record and allocation tests use.
        final List<JsonNode> expected = expectedRows();
        final Path path = ArrowRings.createRing(dir, "data-0.ring", 1 << 16);
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_DATA));
             RootAllocator allocator = new RootAllocator();
             DataRingReader reader = new DataRingReader(ring);
             RingBatchLoader loader = new RingBatchLoader(ring, allocator, true))
        {
            final ArrowRings.Producer producer = new ArrowRings.Producer(ring);
            for (final ArrowRings.Batch b : ArrowRings.goldenBatches())
            {
                producer.write(b);
            }
            final DataRecord record = new DataRecord();
            int batches = 0;
            while (reader.poll(record))
            {
                loader.load(record, reader::release);
                assertBatchEquals(rowsOf(expected, record.batchId()), loader.root(), "rewritten batch " + record.batchId());
                ArrowRings.assertZeroCopy(ring, loader.root());
                batches++;
            }
            assertEquals(3, batches);
            loader.clear();
            assertEquals(ring.tailPosition(), ring.headPosition());
        }
    }

    /** Compares every field of every row of {@code root} with the jsonl rows of its batch. */
    static void assertBatchEquals(final List<JsonNode> want, final VectorSchemaRoot root, final String what)
    {
        assertEquals(want.size(), root.getRowCount(), what + ": rows");
        final VarCharVector messageId = (VarCharVector)root.getVector("message_id");
        final TimeStampMicroTZVector publishTime = (TimeStampMicroTZVector)root.getVector("publish_time");
        final VarBinaryVector data = (VarBinaryVector)root.getVector("data");
        final MapVector attributes = (MapVector)root.getVector("attributes");
        final StructVector entries = (StructVector)attributes.getDataVector();
        final VarCharVector keys = (VarCharVector)entries.getChild("key");
        final VarCharVector values = (VarCharVector)entries.getChild("value");
        final VarCharVector orderingKey = (VarCharVector)root.getVector("ordering_key");
        final IntVector deliveryAttempt = (IntVector)root.getVector("delivery_attempt");
        for (final FieldVector v : List.of(messageId, publishTime, data, attributes))
        {
            assertEquals(0, v.getNullCount(), what + ": a non-nullable column has no nulls: " + v.getName());
        }
        int orderingNulls = 0, attemptNulls = 0, entryCount = 0;
        final HexFormat hex = HexFormat.of();
        for (int i = 0; i < want.size(); i++)
        {
            final JsonNode w = want.get(i);
            final String at = what + " row " + i + " ";
            assertFalse(messageId.isNull(i), at + "message_id");
            assertEquals(w.get("message_id").asText(), new String(messageId.get(i), StandardCharsets.UTF_8), at + "message_id");
            assertFalse(publishTime.isNull(i), at + "publish_time");
            assertEquals(w.get("publish_time_us").asLong(), publishTime.get(i), at + "publish_time");
            assertFalse(data.isNull(i), at + "data");
            assertEquals(w.get("data_hex").asText(), hex.formatHex(data.get(i)), at + "data");

            assertFalse(attributes.isNull(i), at + "attributes");
            final int start = attributes.getOffsetBuffer().getInt(4L * i);
            final int end = attributes.getOffsetBuffer().getInt(4L * (i + 1));
            final JsonNode keysWritten = w.get("attribute_keys");
            final JsonNode map = w.get("attributes");
            assertEquals(keysWritten.size(), end - start, at + "attributes: entries");
            assertEquals(map.size(), end - start, at + "attributes: the jsonl map and key list agree");
            for (int e = start; e < end; e++)
            {
                final String key = keysWritten.get(e - start).asText();
                assertFalse(entries.isNull(e), at + "attributes entry " + (e - start));
                assertFalse(keys.isNull(e), at + "attributes key " + (e - start));
                assertEquals(key, new String(keys.get(e), StandardCharsets.UTF_8), at + "attributes key " + (e - start) + " (written order)");
                final JsonNode value = map.get(key);
                if (value.isNull())
                {
                    assertTrue(values.isNull(e), at + "attributes[" + key + "] is null");
                }
                else
                {
                    assertFalse(values.isNull(e), at + "attributes[" + key + "]");
                    assertEquals(value.asText(), new String(values.get(e), StandardCharsets.UTF_8), at + "attributes[" + key + "]");
                }
            }
            entryCount += end - start;

            final JsonNode ok = w.get("ordering_key");
            if (ok.isNull())
            {
                assertTrue(orderingKey.isNull(i), at + "ordering_key is null");
                orderingNulls++;
            }
            else
            {
                assertFalse(orderingKey.isNull(i), at + "ordering_key");
                assertEquals(ok.asText(), new String(orderingKey.get(i), StandardCharsets.UTF_8), at + "ordering_key");
            }
            final JsonNode da = w.get("delivery_attempt");
            if (da.isNull())
            {
                assertTrue(deliveryAttempt.isNull(i), at + "delivery_attempt is null");
                attemptNulls++;
            }
            else
            {
                assertFalse(deliveryAttempt.isNull(i), at + "delivery_attempt");
                assertEquals(da.asInt(), deliveryAttempt.get(i), at + "delivery_attempt");
            }
        }
        assertEquals(orderingNulls, orderingKey.getNullCount(), what + ": ordering_key null count");
        assertEquals(attemptNulls, deliveryAttempt.getNullCount(), what + ": delivery_attempt null count");
        assertEquals(entryCount, entries.getValueCount(), what + ": map entries");
        assertEquals(0, entries.getNullCount(), what + ": map entries are never null");
        assertEquals(0, keys.getNullCount(), what + ": map keys are never null");
    }
}
