package dev.pubsubshm.ring;

import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The Java-written COMMIT ring testdata/golden/commit-java.ring and its sidecar
 * commit-java.txt, read by the Go side (ringbuf/golden_test.go). The file is what
 * {@link CommitRingWriter} produces now, with fixed identity and clocks: a change to the
 * writer or the layout shows up here as a byte difference. Rewrite both files with
 * {@code mvn -f jvm-reader/pom.xml test -Dtest=GoldenCommitRingTest -Dgolden.update=true}.
 */
class GoldenCommitRingTest
{
    static final Path RING = GoldenFiles.DIR.resolve("commit-java.ring");
    static final Path SIDECAR = GoldenFiles.DIR.resolve("commit-java.txt");

    static final long RING_INSTANCE_ID = 0x1122334455667788L;
    static final long CREATED_UNIX_NS = 1_700_000_000_000_000_000L;
    static final long DATA_INSTANCE_ID = 0xAABBCCDDEEFF0011L;
    static final long PRODUCED_UNIX_NS = 1_700_000_001_000_000_000L;
    static final long HEARTBEAT_NS = 123_456_789L;
    static final ProcessIdentity IDENTITY = new ProcessIdentity(4242, 777);

    @TempDir
    Path dir;

    /** Builds the golden image: the header per FORMAT.md, then three records by the writer. */
    private byte[] build() throws Exception
    {
        final TestRings.Spec spec = TestRings.Spec.commit(4096);
        spec.instanceId = RING_INSTANCE_ID;
        spec.createdUnixNs = CREATED_UNIX_NS;
        final Path path = TestRings.create(dir, "commit.ring", spec);
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_COMMIT));
             CommitRingWriter writer = new CommitRingWriter(ring, CommitRingWriter.Config.defaults()
                 .identity(IDENTITY)
                 .nanoClock(() -> HEARTBEAT_NS)
                 .unixNanoClock(() -> PRODUCED_UNIX_NS)))
        {
            writer.commit(0, DATA_INSTANCE_ID, 1, 10);
            writer.release(1, DATA_INSTANCE_ID, 5, 5);
            writer.nack(2, DATA_INSTANCE_ID, 7, 9);
        }
        return Files.readAllBytes(path);
    }

    /** The sidecar text of a commit ring image, derived from the bytes with the descriptor. */
    static String sidecar(final byte[] image)
    {
        final ByteBuffer file = GoldenFiles.littleEndian(image);
        final StringBuilder sb = new StringBuilder();
        sb.append("# testdata/golden/commit-java.ring: COMMIT ring written by jvm-reader GoldenCommitRingTest ")
            .append("(mvn -f jvm-reader/pom.xml test -Dtest=GoldenCommitRingTest -Dgolden.update=true)\n");
        sb.append(GoldenFiles.headerLines(file));
        final int headerLength = file.getInt(HEADER_LENGTH_OFFSET);
        final long capacity = file.getLong(CAPACITY_OFFSET);
        final long tail = file.getLong(TAIL_POSITION_OFFSET);
        for (long p = file.getLong(HEAD_POSITION_OFFSET); p < tail; p += COMMIT_RECORD_LENGTH)
        {
            final int off = (int)(headerLength + (p & (capacity - 1)));
            sb.append("record position=").append(file.getLong(off + COMMIT_POSITION_OFFSET))
                .append(" type=").append(file.getInt(off + COMMIT_TYPE_OFFSET))
                .append(" partition=").append(file.getInt(off + COMMIT_PARTITION_OFFSET))
                .append(" first=").append(file.getLong(off + COMMIT_FIRST_BATCH_ID_OFFSET))
                .append(" last=").append(file.getLong(off + COMMIT_LAST_BATCH_ID_OFFSET))
                .append(" instance=").append(Long.toUnsignedString(file.getLong(off + COMMIT_DATA_RING_INSTANCE_ID_OFFSET)))
                .append(" pid=").append(file.getInt(off + COMMIT_PRODUCER_PID_OFFSET))
                .append(" produced_ns=").append(file.getLong(off + COMMIT_PRODUCED_UNIX_NS_OFFSET))
                .append('\n');
        }
        return sb.toString();
    }

    @Test
    void theCommittedGoldenFileIsWhatTheWriterProducesNow() throws Exception
    {
        final byte[] image = build();
        final String text = sidecar(image);
        if (GoldenFiles.UPDATE)
        {
            Files.createDirectories(GoldenFiles.DIR);
            Files.write(RING, image);
            Files.writeString(SIDECAR, text, StandardCharsets.UTF_8);
        }
        assertArrayEquals(Files.readAllBytes(RING), image,
            "commit-java.ring differs from what CommitRingWriter writes now; if the change is intended, " +
            "rerun with -Dgolden.update=true and have the Go side read the new file");
        assertEquals(Files.readString(SIDECAR, StandardCharsets.UTF_8), text);
    }

    @Test
    void theCommittedGoldenFileHoldsTheSpecifiedRecords() throws Exception
    {
        final GoldenFiles.Sidecar sidecar = GoldenFiles.parse(Files.readAllLines(SIDECAR));
        final Map<String, String> h = sidecar.header();
        assertEquals(Long.toUnsignedString(MAGIC), h.get("magic"));
        assertEquals(Integer.toString(LAYOUT_VERSION), h.get("layout_version"));
        assertEquals("2", h.get("ring_kind"));
        assertEquals("4096", h.get("header_length"));
        assertEquals("64", h.get("record_alignment"));
        assertEquals("4096", h.get("capacity"));
        assertEquals("8192", h.get("file_length"));
        assertEquals(Long.toUnsignedString(RING_INSTANCE_ID), h.get("ring_instance_id"));
        assertEquals(Long.toString(CREATED_UNIX_NS), h.get("created_unix_ns"));
        assertEquals("-1", h.get("partition"));
        assertEquals("64", h.get("max_record_length"));
        assertEquals("4242", h.get("producer_pid"));
        assertEquals("777", h.get("producer_start_ticks"));
        assertEquals(Long.toString(HEARTBEAT_NS), h.get("producer_heartbeat_ns"));
        assertEquals("1", h.get("producer_closed"));
        assertEquals("0", h.get("consumer_pid"));
        assertEquals("192", h.get("tail_position"));
        assertEquals("0", h.get("head_position"));
        assertEquals("0", h.get("schema_length"));
        assertEquals("1024", h.get("schema_offset"));
        assertEquals(GoldenFiles.HEADER_FIELDS.size(), h.size());

        final String instance = Long.toUnsignedString(DATA_INSTANCE_ID);
        final String produced = Long.toString(PRODUCED_UNIX_NS);
        assertEquals(List.of(
            Map.of("position", "0", "type", "1", "partition", "0", "first", "1", "last", "10",
                "instance", instance, "pid", "4242", "produced_ns", produced),
            Map.of("position", "64", "type", "2", "partition", "1", "first", "5", "last", "5",
                "instance", instance, "pid", "4242", "produced_ns", produced),
            Map.of("position", "128", "type", "3", "partition", "2", "first", "7", "last", "9",
                "instance", instance, "pid", "4242", "produced_ns", produced)),
            sidecar.records());

        // The ring file itself opens, and every slot is published with zero reserved bytes.
        final Path copy = TestRings.copyPrivate(RING, dir, "commit.ring");
        try (RingFile ring = RingFile.open(copy, RingFile.OpenOptions.defaults().kind(KIND_COMMIT)))
        {
            for (long p = 0; p < ring.tailPosition(); p += COMMIT_RECORD_LENGTH)
            {
                final int off = ring.offsetOf(p);
                assertEquals(COMMIT_RECORD_LENGTH, ring.getIntAcquire(off + COMMIT_LENGTH_OFFSET));
                assertEquals(0, ring.getLong(off + COMMIT_RESERVED_OFFSET));
            }
            assertEquals(0, ring.getInt(ring.offsetOf(192) + COMMIT_LENGTH_OFFSET), "the next slot is empty");
        }
    }
}
