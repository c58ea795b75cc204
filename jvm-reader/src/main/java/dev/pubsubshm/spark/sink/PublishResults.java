package dev.pubsubshm.spark.sink;

import java.nio.charset.StandardCharsets;

import org.apache.spark.unsafe.Platform;

import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingReader;
import dev.pubsubshm.ring.RingFile;

/**
 * The consumer of a writer's RESULTS ring (FORMAT.md section 6): pullerd answers every OUTBOUND
 * batch with one RAW record once Pub/Sub accepted (or refused) its rows. Reading an answer
 * allocates nothing unless it carries an error.
 *
 * <pre>
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                  outbound_batch_id (i64)                      |  0
 * |                 outbound_instance_id (u64)                    |  8
 * |   rows (i32)  |  published (i32)  |  status (i32)  | attempts | 16
 * |                   published_bytes (i64)                       | 32
 * |                      latency_ns (i64)                         | 40
 * |   error_length (u32)   |   reserved (u32)   | reserved (u64)  | 48
 * |                 error text (error_length bytes)               | 64
 * +---------------------------------------------------------------+
 * </pre>
 *
 * <p>Not thread-safe: the task's thread (the heartbeat timer may call {@link #heartbeat()}).
 */
final class PublishResults
{
    /** Offsets in a result body (the twin of pullerd's Res*Offset constants). */
    static final int BATCH_ID_OFFSET = 0;
    static final int INSTANCE_ID_OFFSET = BATCH_ID_OFFSET + Long.BYTES;
    static final int ROWS_OFFSET = INSTANCE_ID_OFFSET + Long.BYTES;
    static final int PUBLISHED_OFFSET = ROWS_OFFSET + Integer.BYTES;
    static final int STATUS_OFFSET = PUBLISHED_OFFSET + Integer.BYTES;
    static final int ATTEMPTS_OFFSET = STATUS_OFFSET + Integer.BYTES;
    static final int BYTES_OFFSET = ATTEMPTS_OFFSET + Integer.BYTES;
    static final int LATENCY_OFFSET = BYTES_OFFSET + Long.BYTES;
    static final int ERROR_LENGTH_OFFSET = LATENCY_OFFSET + Long.BYTES;
    static final int RESERVED_OFFSET = ERROR_LENGTH_OFFSET + Integer.BYTES;
    /** The fixed part of a result body; the error text follows. */
    static final int RESULT_LENGTH = RESERVED_OFFSET + Integer.BYTES + Long.BYTES;

    /** gRPC code names, by number. */
    private static final String[] CODES = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",
        "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};

    private final DataRingReader reader;
    private final DataRecord view = new DataRecord();
    private final long outboundInstanceId;
    private final String topic;

    private long answered;
    private long publishedBatches;
    private long publishedRows;
    private long publishedBytes;
    private long maxAttempts;
    private long latencyNs;
    private String failure;

    /**
     * Attaches as the consumer of the RESULTS ring.
     *
     * @param ring               the RESULTS ring (kind DATA) the caller holds a reference to.
     * @param outboundInstanceId the OUTBOUND ring's instance id, which every answer names.
     * @param topic              the topic, for messages.
     */
    PublishResults(final RingFile ring, final long outboundInstanceId, final String topic)
    {
        this.reader = new DataRingReader(ring);
        this.outboundInstanceId = outboundInstanceId;
        this.topic = topic;
    }

    /**
     * Reads every answer available.
     *
     * @return the number read.
     */
    int poll()
    {
        int n = 0;
        while (reader.poll(view))
        {
            n++;
            final long a = view.bodyAddress();
            if (view.bodyLength() < RESULT_LENGTH)
            {
                fail("pullerd wrote a result record of " + view.bodyLength() + " bytes (at least " + RESULT_LENGTH +
                    " expected) in \"" + reader.ring().path() + "\"");
            }
            else
            {
                final long batch = Platform.getLong(null, a + BATCH_ID_OFFSET);
                final long instance = Platform.getLong(null, a + INSTANCE_ID_OFFSET);
                final int rows = Platform.getInt(null, a + ROWS_OFFSET);
                final int published = Platform.getInt(null, a + PUBLISHED_OFFSET);
                final int status = Platform.getInt(null, a + STATUS_OFFSET);
                final int attempts = Platform.getInt(null, a + ATTEMPTS_OFFSET);
                final int errLen = Platform.getInt(null, a + ERROR_LENGTH_OFFSET);
                if (instance != outboundInstanceId && batch != 0)
                {
                    fail("pullerd answered for another OUTBOUND ring (instance " + Long.toUnsignedString(instance) +
                        ", this writer's is " + Long.toUnsignedString(outboundInstanceId) + ")");
                }
                else if (status != 0 || published != rows || batch == 0)
                {
                    String text = "";
                    if (errLen > 0 && RESULT_LENGTH + (long)errLen <= view.bodyLength())
                    {
                        final byte[] b = new byte[errLen];
                        Platform.copyMemory(null, a + RESULT_LENGTH, b, Platform.BYTE_ARRAY_OFFSET, errLen);
                        text = new String(b, StandardCharsets.UTF_8);
                    }
                    fail("publishing to " + topic + " failed" + (batch == 0 ? "" : " for batch " + batch + " (" +
                        published + " of " + rows + " rows accepted)") + ": " + codeName(status) + ": " + text);
                }
                else
                {
                    answered++;
                    publishedBatches++;
                    publishedRows += rows;
                    publishedBytes += Platform.getLong(null, a + BYTES_OFFSET);
                    latencyNs += Platform.getLong(null, a + LATENCY_OFFSET);
                    maxAttempts = Math.max(maxAttempts, attempts);
                }
            }
            reader.release(view.position());
        }
        return n;
    }

    private void fail(final String message)
    {
        answered++;
        if (failure == null)
        {
            failure = message;
        }
    }

    static String codeName(final int code)
    {
        return code >= 0 && code < CODES.length ? CODES[code] : "code " + code;
    }

    /** @return answers read (successes and failures). */
    long answered()
    {
        return answered;
    }

    /** @return batches Pub/Sub accepted in full. */
    long publishedBatches()
    {
        return publishedBatches;
    }

    /** @return rows Pub/Sub accepted. */
    long publishedRows()
    {
        return publishedRows;
    }

    /** @return encoded bytes Pub/Sub accepted. */
    long publishedBytes()
    {
        return publishedBytes;
    }

    /** @return the most Publish attempts one batch needed. */
    long maxAttempts()
    {
        return maxAttempts;
    }

    /** @return the sum of the batches' publish latencies, in nanoseconds. */
    long latencyNs()
    {
        return latencyNs;
    }

    /** @return the first failure, or {@code null}. */
    String failure()
    {
        return failure;
    }

    /** @return the reader (liveness of pullerd as the RESULTS ring's producer). */
    DataRingReader reader()
    {
        return reader;
    }

    /** Stamps the consumer heartbeat (any thread). */
    void heartbeat()
    {
        reader.heartbeat();
    }

    /** Detaches ({@code consumer_closed = 1}). */
    void close()
    {
        reader.close();
    }
}
