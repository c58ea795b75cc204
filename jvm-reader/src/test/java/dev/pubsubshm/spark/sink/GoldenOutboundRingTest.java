package dev.pubsubshm.spark.sink;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;

import org.apache.spark.sql.catalyst.expressions.UnsafeProjection;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import dev.pubsubshm.ring.OutboundTestRings;
import dev.pubsubshm.ring.ProcessIdentity;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * The Java-written OUTBOUND ring testdata/golden/outbound-java.ring (and its sidecar
 * outbound-java.txt), read by the Go side (pullerd/internal/outbatch TestGoldenOutboundRing,
 * with pullerd's own batch parser): 20 rows of {@link #row} in batches of at most 8 rows,
 * written by {@link OutboundBatchBuilder} with fixed identity and clocks. A change to the
 * builder or the layout shows up as a byte difference. Rewrite both files with
 * {@code mvn -f jvm-reader/pom.xml test -Dtest=GoldenOutboundRingTest -Dgolden.update=true}.
 */
class GoldenOutboundRingTest
{
    static final Path DIR = Path.of(System.getProperty("golden.dir", "../testdata/golden"));
    static final Path RING = DIR.resolve("outbound-java.ring");
    static final Path SIDECAR = DIR.resolve("outbound-java.txt");
    static final int ROWS = 20;

    @TempDir
    Path dir;

    /**
     * Row i of the golden file (the Go test computes the same): data "g-&lt;i&gt;|" and
     * i*7 % 50 letters; no attributes when i % 3 == 0, else {i: i, k2: v&lt;i % 4&gt;}; ordering
     * key null when i % 4 == 0, empty (also none) when i % 4 == 1, else key-&lt;i % 5&gt;.
     */
    static OutboundBatchBuilderTest.Msg row(final int i)
    {
        final StringBuilder sb = new StringBuilder("g-").append(i).append('|');
        for (int j = 0; j < i * 7 % 50; j++)
        {
            sb.append((char)('a' + i % 26));
        }
        Map<String, String> attrs = null;
        if (i % 3 != 0)
        {
            attrs = new LinkedHashMap<>();
            attrs.put("i", Integer.toString(i));
            attrs.put("k2", "v" + i % 4);
        }
        final String key = i % 4 == 0 ? null : i % 4 == 1 ? "" : "key-" + i % 5;
        return new OutboundBatchBuilderTest.Msg(sb.toString().getBytes(StandardCharsets.UTF_8), attrs, key);
    }

    private byte[] build() throws Exception
    {
        final Path path = OutboundTestRings.createOutbound(dir, "outbound-7.ring", 7, 16 << 10);
        try (RingFile ring = RingFile.open(path, RingFile.OpenOptions.defaults().kind(KIND_OUTBOUND)))
        {
            final OutboundRing out = new OutboundRing(ring, new ProcessIdentity(4242, 777), () -> 123_456_789L,
                () -> 1_700_000_001_000_000_000L);
            final SinkOptions o = SinkOptions.parse(Map.of("projectId", "p", "topicId", "golden", "ringRoot", dir.toString(),
                "batchRows", "8", "batchBytes", "1k", "lingerMs", "0"), Map.of());
            final OutboundBatchBuilder b = new OutboundBatchBuilder(out, InputColumns.resolve(OutboundBatchBuilderTest.SCHEMA),
                false, o, (n, s) -> { throw new AssertionError("ring full"); });
            final UnsafeProjection proj = UnsafeProjection.create(OutboundBatchBuilderTest.SCHEMA);
            for (int i = 0; i < ROWS; i++)
            {
                final var r = OutboundBatchBuilderTest.generic(row(i));
                b.append(i % 2 == 0 ? proj.apply(r) : r);
            }
            b.flush();
        }
        return Files.readAllBytes(path);
    }

    /** The sidecar: the header fields the Go test checks and one line per record. */
    static String sidecar(final byte[] image)
    {
        final ByteBuffer f = ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN);
        final StringBuilder sb = new StringBuilder("# testdata/golden/outbound-java.ring: OUTBOUND ring written by jvm-reader " +
            "GoldenOutboundRingTest (mvn -f jvm-reader/pom.xml test -Dtest=GoldenOutboundRingTest -Dgolden.update=true)\n");
        sb.append("ring_kind=").append(f.getInt(RING_KIND_OFFSET)).append('\n')
            .append("capacity=").append(f.getLong(CAPACITY_OFFSET)).append('\n')
            .append("partition=").append(f.getInt(PARTITION_OFFSET)).append('\n')
            .append("producer_pid=").append(f.getLong(PRODUCER_PID_OFFSET)).append('\n')
            .append("head_position=").append(f.getLong(HEAD_POSITION_OFFSET)).append('\n')
            .append("tail_position=").append(f.getLong(TAIL_POSITION_OFFSET)).append('\n');
        final int hl = f.getInt(HEADER_LENGTH_OFFSET);
        final long mask = f.getLong(CAPACITY_OFFSET) - 1;
        for (long p = f.getLong(HEAD_POSITION_OFFSET); p < f.getLong(TAIL_POSITION_OFFSET); )
        {
            final int off = (int)(hl + (p & mask));
            final int length = f.getInt(off + RECORD_LENGTH_OFFSET);
            sb.append("record position=").append(p)
                .append(" length=").append(length)
                .append(" type=").append(RingDescriptor.recordTypeName(f.getInt(off + RECORD_TYPE_OFFSET)))
                .append(" batch_id=").append(f.getLong(off + RECORD_BATCH_ID_OFFSET))
                .append(" row_count=").append(f.getInt(off + RECORD_ROW_COUNT_OFFSET))
                .append(" meta_length=").append(f.getInt(off + RECORD_META_LENGTH_OFFSET))
                .append(" body_offset=").append(f.getInt(off + RECORD_BODY_OFFSET_OFFSET))
                .append(" body_length=").append(f.getLong(off + RECORD_BODY_LENGTH_OFFSET))
                .append('\n');
            p += align64(length);
        }
        return sb.toString();
    }

    @Test
    void goldenFileIsWhatTheBuilderWrites() throws Exception
    {
        final byte[] image = build();
        if (Boolean.getBoolean("golden.update"))
        {
            Files.createDirectories(DIR);
            Files.write(RING, image);
            Files.writeString(SIDECAR, sidecar(image));
        }
        assertArrayEquals(Files.readAllBytes(RING), image,
            "the OUTBOUND batches changed; if on purpose, rewrite with -Dtest=GoldenOutboundRingTest -Dgolden.update=true");
        assertEquals(Files.readString(SIDECAR), sidecar(image));
    }
}
