package dev.pubsubshm.spark.sink;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** Every RESULTS body offset against docs/FORMAT.md section 6.2 (the Go twin: TestResultLayout). */
class ResultLayoutTest
{
    @Test
    void offsetsMatchFormat()
    {
        assertEquals(0, PublishResults.BATCH_ID_OFFSET, "outbound_batch_id");
        assertEquals(8, PublishResults.INSTANCE_ID_OFFSET, "outbound_instance_id");
        assertEquals(16, PublishResults.ROWS_OFFSET, "rows");
        assertEquals(20, PublishResults.PUBLISHED_OFFSET, "published");
        assertEquals(24, PublishResults.STATUS_OFFSET, "status");
        assertEquals(28, PublishResults.ATTEMPTS_OFFSET, "attempts");
        assertEquals(32, PublishResults.BYTES_OFFSET, "published_bytes");
        assertEquals(40, PublishResults.LATENCY_OFFSET, "latency_ns");
        assertEquals(48, PublishResults.ERROR_LENGTH_OFFSET, "error_length");
        assertEquals(52, PublishResults.RESERVED_OFFSET, "reserved");
        assertEquals(64, PublishResults.RESULT_LENGTH, "error text");
        assertEquals(6, OutboundBatchBuilder.NODES);
        assertEquals(15, OutboundBatchBuilder.BUFFERS);
        assertEquals("NOT_FOUND", PublishResults.codeName(5));
        assertEquals("PERMISSION_DENIED", PublishResults.codeName(7));
        assertEquals("UNAVAILABLE", PublishResults.codeName(14));
        assertEquals("code 99", PublishResults.codeName(99));
    }
}
