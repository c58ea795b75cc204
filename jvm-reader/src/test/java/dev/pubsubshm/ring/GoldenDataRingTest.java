package dev.pubsubshm.ring;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.zip.CRC32C;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Reads the Go-written DATA ring testdata/golden/data-raw.ring (ringbuf/golden_test.go) and
 * checks every header field and every record against its sidecar data-raw.txt: the two
 * languages must agree on every byte of the layout.
 */
class GoldenDataRingTest
{
    private static final Path RING = GoldenFiles.DIR.resolve("data-raw.ring");
    private static final Path SIDECAR = GoldenFiles.DIR.resolve("data-raw.txt");

    @TempDir
    Path dir;

    private static long u(final Map<String, String> map, final String key)
    {
        final String v = map.get(key);
        assertNotNull(v, "sidecar has no " + key + " in " + map);
        return Long.parseUnsignedLong(v);
    }

    private static long s(final Map<String, String> map, final String key)
    {
        final String v = map.get(key);
        assertNotNull(v, "sidecar has no " + key + " in " + map);
        return Long.parseLong(v);
    }

    private static long crc32c(final ByteBuffer body)
    {
        final CRC32C crc = new CRC32C();
        crc.update(body);
        return crc.getValue();
    }

    @Test
    void everyHeaderFieldMatchesTheSidecar() throws Exception
    {
        final GoldenFiles.Sidecar sidecar = GoldenFiles.parse(Files.readAllLines(SIDECAR));
        final ByteBuffer file = GoldenFiles.littleEndian(GoldenFiles.read(RING));
        final Set<String> known = new HashSet<>();
        for (final GoldenFiles.Field f : GoldenFiles.HEADER_FIELDS)
        {
            known.add(f.name());
            assertEquals(sidecar.header().get(f.name()), f.read(file), "header field " + f.name());
        }
        assertEquals(known, sidecar.header().keySet(), "the sidecar lists exactly the header fields of FORMAT.md");

        final Path copy = TestRings.copyPrivate(RING, dir, "data-raw.ring");
        try (RingFile ring = RingFile.open(copy, RingFile.OpenOptions.defaults().kind(KIND_DATA)))
        {
            final Map<String, String> h = sidecar.header();
            assertEquals(u(h, "layout_version"), ring.layoutVersion());
            assertEquals(u(h, "ring_kind"), ring.kind());
            assertEquals(u(h, "header_length"), ring.headerLength());
            assertEquals(u(h, "capacity"), ring.capacity());
            assertEquals(u(h, "file_length"), ring.fileLength());
            assertEquals(u(h, "ring_instance_id"), ring.instanceId());
            assertEquals(s(h, "created_unix_ns"), ring.createdUnixNs());
            assertEquals(s(h, "partition"), ring.partition());
            assertEquals(u(h, "max_record_length"), ring.maxRecordLength());
            assertEquals(u(h, "schema_length"), ring.schemaLength());
            assertEquals(s(h, "tail_position"), ring.tailPosition());
            assertEquals(s(h, "head_position"), ring.headPosition());
            assertEquals(Files.size(copy), ring.fileLength());
        }
    }

    @Test
    void everyRecordFromHeadToTailMatchesTheSidecar() throws Exception
    {
        final GoldenFiles.Sidecar sidecar = GoldenFiles.parse(Files.readAllLines(SIDECAR));
        final List<Map<String, String>> expected = sidecar.records();
        assertFalse(expected.isEmpty());
        final Path copy = TestRings.copyPrivate(RING, dir, "data-raw.ring");
        try (RingFile ring = RingFile.open(copy, RingFile.OpenOptions.defaults().kind(KIND_DATA)))
        {
            // 1. A raw walk with the descriptor's offsets, PADDING included.
            final ByteBuffer mem = ring.duplicateBuffer();
            long p = ring.headPosition();
            for (final Map<String, String> rec : expected)
            {
                assertEquals(s(rec, "position"), p, "record position");
                final int off = ring.offsetOf(p);
                final int length = mem.getInt(off + RECORD_LENGTH_OFFSET);
                final int type = mem.getInt(off + RECORD_TYPE_OFFSET);
                assertEquals(s(rec, "length"), length, "length at " + p);
                assertEquals(s(rec, "type"), type, "type at " + p);
                assertEquals(s(rec, "batch_id"), mem.getLong(off + RECORD_BATCH_ID_OFFSET), "batch_id at " + p);
                assertEquals(s(rec, "state"), mem.getInt(off + RECORD_STATE_OFFSET), "state at " + p);
                assertEquals(s(rec, "body_length"), mem.getLong(off + RECORD_BODY_LENGTH_OFFSET), "body_length at " + p);
                if (rec.containsKey("row_count"))
                {
                    assertEquals(s(rec, "row_count"), mem.getInt(off + RECORD_ROW_COUNT_OFFSET), "row_count at " + p);
                }
                if (rec.containsKey("produced_unix_ns"))
                {
                    assertEquals(s(rec, "produced_unix_ns"), mem.getLong(off + RECORD_PRODUCED_UNIX_NS_OFFSET),
                        "produced_unix_ns at " + p);
                }
                assertEquals(p, mem.getLong(off + RECORD_POSITION_OFFSET), "position field at " + p);
                if (type == TYPE_PADDING)
                {
                    assertEquals(0, u(rec, "crc32c"), "a PADDING record has no body");
                }
                else
                {
                    final int bodyOffset = mem.getInt(off + RECORD_BODY_OFFSET_OFFSET);
                    final long bodyLength = mem.getLong(off + RECORD_BODY_LENGTH_OFFSET);
                    final ByteBuffer body = ring.duplicateBuffer().position(off + bodyOffset)
                        .limit(off + bodyOffset + (int)bodyLength);
                    assertEquals(u(rec, "crc32c"), crc32c(body), "crc32c of the body at " + p);
                }
                p += align64(length);
            }
            assertEquals(ring.tailPosition(), p, "the sidecar lists every record up to tail_position");

            // 2. The reader: every non-PADDING record, in order, with the generator's pattern
            //    (byte i of batch b is (b*31 + i) & 0xFF).
            try (DataRingReader reader = new DataRingReader(ring))
            {
                final DataRecord r = new DataRecord();
                int polled = 0;
                for (final Map<String, String> rec : expected)
                {
                    if (s(rec, "type") == TYPE_PADDING)
                    {
                        continue;
                    }
                    assertTrue(reader.poll(r), "record at " + rec.get("position"));
                    assertEquals(s(rec, "position"), r.position());
                    assertEquals(s(rec, "batch_id"), r.batchId());
                    assertEquals(s(rec, "type"), r.type());
                    assertEquals(s(rec, "body_length"), r.bodyLength());
                    final ByteBuffer body = r.bodyBuffer();
                    for (int i = 0; i < r.bodyLength(); i++)
                    {
                        assertEquals((byte)(r.batchId() * 31 + i), body.get(body.position() + i),
                            "byte " + i + " of batch " + r.batchId());
                    }
                    assertEquals(u(rec, "crc32c"), crc32c(r.bodyBuffer()));
                    reader.release(r.position());
                    polled++;
                }
                assertTrue(polled > 0);
                assertFalse(reader.poll(r));
                assertTrue(reader.isEndOfStream(), "the golden producer closed the stream");
                assertEquals(ring.tailPosition(), ring.headPosition(), "releases moved head over padding to tail");
            }
        }
    }
}
