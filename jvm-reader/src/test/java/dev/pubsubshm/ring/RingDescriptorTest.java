package dev.pubsubshm.ring;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

import static dev.pubsubshm.ring.RingDescriptor.*;
import static org.junit.jupiter.api.Assertions.assertEquals;

/**
 * Every offset of {@link RingDescriptor} against the literal numbers printed in
 * docs/FORMAT.md (layout 1.0). A failure here means the descriptor drifted from the spec.
 */
class RingDescriptorTest
{
    @Test
    void fileHeaderStaticBlockMatchesFormatSection2()
    {
        assertEquals(0, MAGIC_OFFSET);
        assertEquals(8, LAYOUT_VERSION_OFFSET);
        assertEquals(12, RING_KIND_OFFSET);
        assertEquals(16, HEADER_LENGTH_OFFSET);
        assertEquals(20, RECORD_ALIGNMENT_OFFSET);
        assertEquals(24, CAPACITY_OFFSET);
        assertEquals(32, FILE_LENGTH_OFFSET);
        assertEquals(40, RING_INSTANCE_ID_OFFSET);
        assertEquals(48, CREATED_UNIX_NS_OFFSET);
        assertEquals(56, PARTITION_OFFSET);
        assertEquals(60, MAX_RECORD_LENGTH_OFFSET);
        assertEquals(64, STATIC_BLOCK_END);
    }

    @Test
    void identityBlocksMatchFormatSection2()
    {
        assertEquals(0, IDENTITY_PID_OFFSET);
        assertEquals(8, IDENTITY_START_TICKS_OFFSET);
        assertEquals(16, IDENTITY_HEARTBEAT_NS_OFFSET);
        assertEquals(24, IDENTITY_CLOSED_OFFSET);
        assertEquals(32, IDENTITY_LENGTH);

        assertEquals(64, PRODUCER_IDENTITY_OFFSET);
        assertEquals(64, PRODUCER_PID_OFFSET);
        assertEquals(72, PRODUCER_START_TICKS_OFFSET);
        assertEquals(80, PRODUCER_HEARTBEAT_NS_OFFSET);
        assertEquals(88, PRODUCER_CLOSED_OFFSET);

        assertEquals(128, CONSUMER_IDENTITY_OFFSET);
        assertEquals(128, CONSUMER_PID_OFFSET);
        assertEquals(136, CONSUMER_START_TICKS_OFFSET);
        assertEquals(144, CONSUMER_HEARTBEAT_NS_OFFSET);
        assertEquals(152, CONSUMER_CLOSED_OFFSET);
    }

    @Test
    void positionsAndSchemaMatchFormatSection2()
    {
        assertEquals(192, TAIL_POSITION_OFFSET);
        assertEquals(256, HEAD_POSITION_OFFSET);
        assertEquals(512, SCHEMA_LENGTH_OFFSET);
        assertEquals(516, SCHEMA_OFFSET_OFFSET);
        assertEquals(1024, SCHEMA_START);
    }

    @Test
    void headerConstantsMatchFormatSection2()
    {
        assertEquals(0x474E524D48535350L, MAGIC);
        final byte[] ascii = new byte[8];
        ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(0, MAGIC).get(0, ascii);
        assertEquals("PSSHMRNG", new String(ascii, StandardCharsets.US_ASCII));
        assertEquals(0x00010000, LAYOUT_VERSION);
        assertEquals(1, VERSION_MAJOR);
        assertEquals(0, VERSION_MINOR);
        assertEquals(1, KIND_DATA);
        assertEquals(2, KIND_COMMIT);
        assertEquals(3, KIND_OUTBOUND);
        assertEquals(64, RECORD_ALIGNMENT);
        assertEquals(64, CACHE_LINE_LENGTH);
        assertEquals(4096, PAGE_SIZE);
        assertEquals(4096, MIN_CAPACITY);
        assertEquals(1L << 30, MAX_CAPACITY);
        assertEquals(2048, maxRecordLengthFor(KIND_DATA, 4096));
        assertEquals(2048, maxRecordLengthFor(KIND_OUTBOUND, 4096));
        assertEquals(64, maxRecordLengthFor(KIND_COMMIT, 4096));
    }

    @Test
    void dataRecordHeaderMatchesFormatSection3()
    {
        assertEquals(0, RECORD_LENGTH_OFFSET);
        assertEquals(4, RECORD_TYPE_OFFSET);
        assertEquals(8, RECORD_BATCH_ID_OFFSET);
        assertEquals(16, RECORD_ROW_COUNT_OFFSET);
        assertEquals(20, RECORD_STATE_OFFSET);
        assertEquals(24, RECORD_META_OFFSET_OFFSET);
        assertEquals(28, RECORD_META_LENGTH_OFFSET);
        assertEquals(32, RECORD_BODY_OFFSET_OFFSET);
        assertEquals(36, RECORD_RESERVED_OFFSET);
        assertEquals(40, RECORD_BODY_LENGTH_OFFSET);
        assertEquals(48, RECORD_PRODUCED_UNIX_NS_OFFSET);
        assertEquals(56, RECORD_POSITION_OFFSET);
        assertEquals(64, RECORD_HEADER_LENGTH);

        assertEquals(1, TYPE_ARROW);
        assertEquals(2, TYPE_PADDING);
        assertEquals(3, TYPE_RAW);
        assertEquals(1, STATE_RELEASED);
        assertEquals(2, STATE_ABORTED);
        assertEquals(0xFFFFFFFF, ARROW_CONTINUATION);
    }

    @Test
    void commitRecordMatchesFormatSection4()
    {
        assertEquals(0, COMMIT_LENGTH_OFFSET);
        assertEquals(4, COMMIT_TYPE_OFFSET);
        assertEquals(8, COMMIT_POSITION_OFFSET);
        assertEquals(16, COMMIT_FIRST_BATCH_ID_OFFSET);
        assertEquals(24, COMMIT_LAST_BATCH_ID_OFFSET);
        assertEquals(32, COMMIT_PARTITION_OFFSET);
        assertEquals(36, COMMIT_PRODUCER_PID_OFFSET);
        assertEquals(40, COMMIT_DATA_RING_INSTANCE_ID_OFFSET);
        assertEquals(48, COMMIT_PRODUCED_UNIX_NS_OFFSET);
        assertEquals(56, COMMIT_RESERVED_OFFSET);
        assertEquals(64, COMMIT_RECORD_LENGTH);
        assertEquals(-64, COMMIT_LENGTH_CLAIMED);

        assertEquals(1, COMMIT_TYPE_COMMIT);
        assertEquals(2, COMMIT_TYPE_RELEASE);
        assertEquals(3, COMMIT_TYPE_NACK);
        assertEquals(4, COMMIT_TYPE_PADDING);
    }

    @Test
    void alignRoundsUpToPowersOfTwo()
    {
        assertEquals(0, align64(0));
        assertEquals(64, align64(1));
        assertEquals(64, align64(64));
        assertEquals(128, align64(65));
        assertEquals(1600, align64(1564));
        assertEquals(4096, align(4095, 4096));
    }
}
