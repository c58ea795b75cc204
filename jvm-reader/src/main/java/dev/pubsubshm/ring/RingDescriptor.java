package dev.pubsubshm.ring;

/**
 * The byte layout of a ring file, as specified by {@code docs/FORMAT.md} (layout 1.0), the
 * single source of truth shared with the Go side ({@code ringbuf/descriptor.go}).
 *
 * <p>Every offset is computed step by step from named sizes; {@code RingDescriptorTest}
 * checks each one against the numbers printed in FORMAT.md. All integers are
 * <b>little-endian</b>. A <em>position</em> is a 64-bit stream position; position {@code p}
 * lives at file offset {@code header_length + (p & (capacity - 1))}.
 *
 * <h2>File header (section 2)</h2>
 * Fields written by different processes sit on different 64-byte cache lines.
 * <pre>
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                      magic "PSSHMRNG" (u64)                   |  0
 * +---------------------------------------------------------------+
 * |                     layout_version (u32)                      |  8
 * +---------------------------------------------------------------+
 * |                        ring_kind (u32)                        | 12
 * +---------------------------------------------------------------+
 * |                      header_length (u32)                      | 16
 * +---------------------------------------------------------------+
 * |                     record_alignment (u32)                    | 20
 * +---------------------------------------------------------------+
 * |                         capacity (u64)                        | 24
 * +---------------------------------------------------------------+
 * |                       file_length (u64)                       | 32
 * +---------------------------------------------------------------+
 * |                     ring_instance_id (u64)                    | 40
 * +---------------------------------------------------------------+
 * |                      created_unix_ns (i64)                    | 48
 * +---------------------------------------------------------------+
 * |                        partition (i32)                        | 56
 * +---------------------------------------------------------------+
 * |                    max_record_length (u32)                    | 60
 * +===============================================================+
 * |                       producer_pid (i64)                      | 64
 * |                   producer_start_ticks (i64)                  | 72
 * |                  producer_heartbeat_ns (i64)                  | 80
 * |                      producer_closed (i64)                    | 88
 * +===============================================================+
 * |                       consumer_pid (i64)                      | 128
 * |                   consumer_start_ticks (i64)                  | 136
 * |                  consumer_heartbeat_ns (i64)                  | 144
 * |                      consumer_closed (i64)                    | 152
 * +===============================================================+
 * |                     tail_position (i64)                       | 192
 * +===============================================================+
 * |                     head_position (i64)                       | 256
 * +===============================================================+
 * |                      schema_length (u32)                      | 512
 * |                      schema_offset (u32)                      | 516
 * +===============================================================+
 * |            schema bytes (Arrow IPC Schema message)            | 1024 ...
 * +---------------------------------------------------------------+
 * </pre>
 *
 * <h2>DATA / OUTBOUND record (section 3)</h2>
 * Starts on a 64-byte boundary and occupies {@code align64(length)} bytes.
 * <pre>
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                          length (i32)                         |  0
 * +---------------------------------------------------------------+
 * |                           type (i32)                          |  4
 * +---------------------------------------------------------------+
 * |                         batch_id (i64)                        |  8
 * +---------------------------------------------------------------+
 * |                        row_count (i32)                        | 16
 * +---------------------------------------------------------------+
 * |                          state (i32)                          | 20
 * +---------------------------------------------------------------+
 * |                       meta_offset (u32)                       | 24
 * +---------------------------------------------------------------+
 * |                       meta_length (u32)                       | 28
 * +---------------------------------------------------------------+
 * |                       body_offset (u32)                       | 32
 * +---------------------------------------------------------------+
 * |                        reserved (u32)                         | 36
 * +---------------------------------------------------------------+
 * |                       body_length (i64)                       | 40
 * +---------------------------------------------------------------+
 * |                    produced_unix_ns (i64)                     | 48
 * +---------------------------------------------------------------+
 * |                        position (i64)                         | 56
 * +---------------------------------------------------------------+
 * |        Arrow IPC message: 0xFFFFFFFF, i32 flatbuffer size,    | 64
 * |        flatbuffer Message, zero padding to 8                  |
 * +---------------------------------------------------------------+
 * |        zero padding to a multiple of 64 (from record start)   |
 * +---------------------------------------------------------------+
 * |        Arrow body: buffers, each starting on 64 bytes         | body_offset
 * +---------------------------------------------------------------+
 * </pre>
 *
 * <h2>COMMIT record (section 4)</h2>
 * Fixed 64-byte slots.
 * <pre>
 *  0                   1                   2                   3
 *  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
 * +---------------------------------------------------------------+
 * |                          length (i32)                         |  0
 * +---------------------------------------------------------------+
 * |                           type (i32)                          |  4
 * +---------------------------------------------------------------+
 * |                         position (i64)                        |  8
 * +---------------------------------------------------------------+
 * |                      first_batch_id (i64)                     | 16
 * +---------------------------------------------------------------+
 * |                      last_batch_id (i64)                      | 24
 * +---------------------------------------------------------------+
 * |                        partition (i32)                        | 32
 * +---------------------------------------------------------------+
 * |                      producer_pid (i32)                       | 36
 * +---------------------------------------------------------------+
 * |                 data_ring_instance_id (u64)                   | 40
 * +---------------------------------------------------------------+
 * |                    produced_unix_ns (i64)                     | 48
 * +---------------------------------------------------------------+
 * |                       reserved (u64)                          | 56
 * +---------------------------------------------------------------+
 * </pre>
 */
public final class RingDescriptor
{
    /** Bytes in an {@code i32}/{@code u32} field. */
    public static final int SIZE_OF_INT = Integer.BYTES;
    /** Bytes in an {@code i64}/{@code u64} field. */
    public static final int SIZE_OF_LONG = Long.BYTES;

    /** A cache line: fields written by different processes never share one. */
    public static final int CACHE_LINE_LENGTH = 64;
    /** {@code record_alignment}: every record starts and ends on this alignment. */
    public static final int RECORD_ALIGNMENT = 64;
    /** {@code header_length} is a multiple of this, and at least this. */
    public static final int PAGE_SIZE = 4096;

    /** {@code magic}: the ASCII bytes {@code PSSHMRNG} read as a little-endian u64. */
    public static final long MAGIC = 0x474E524D48535350L;
    /** Major layout version this code reads and writes; another major is refused. */
    public static final int VERSION_MAJOR = 1;
    /** Minor layout version of this code; a higher minor only adds fields in reserved space. */
    public static final int VERSION_MINOR = 0;
    /** {@code layout_version} as stored: {@code major << 16 | minor}. */
    public static final int LAYOUT_VERSION = VERSION_MAJOR << 16 | VERSION_MINOR;

    /** Smallest ring area ({@code capacity}). */
    public static final long MIN_CAPACITY = 4096;
    /** Largest ring area ({@code capacity}), 2^30. */
    public static final long MAX_CAPACITY = 1L << 30;

    /** {@code ring_kind} of a DATA ring (Go to JVM). */
    public static final int KIND_DATA = 1;
    /** {@code ring_kind} of a COMMIT ring (JVM to Go). */
    public static final int KIND_COMMIT = 2;
    /** {@code ring_kind} of an OUTBOUND ring (JVM to Go, DATA layout). */
    public static final int KIND_OUTBOUND = 3;

    // ---------------------------------------------------------------------------------
    // File header. The static block: written once by the creator.
    // ---------------------------------------------------------------------------------
    public static final int MAGIC_OFFSET;
    public static final int LAYOUT_VERSION_OFFSET;
    public static final int RING_KIND_OFFSET;
    public static final int HEADER_LENGTH_OFFSET;
    public static final int RECORD_ALIGNMENT_OFFSET;
    public static final int CAPACITY_OFFSET;
    public static final int FILE_LENGTH_OFFSET;
    public static final int RING_INSTANCE_ID_OFFSET;
    public static final int CREATED_UNIX_NS_OFFSET;
    public static final int PARTITION_OFFSET;
    public static final int MAX_RECORD_LENGTH_OFFSET;
    /** End of the static block (exclusive). */
    public static final int STATIC_BLOCK_END;

    /** Offsets inside an identity block (one per side, each on its own cache line). */
    public static final int IDENTITY_PID_OFFSET;
    public static final int IDENTITY_START_TICKS_OFFSET;
    public static final int IDENTITY_HEARTBEAT_NS_OFFSET;
    public static final int IDENTITY_CLOSED_OFFSET;
    /** Bytes used by an identity block. */
    public static final int IDENTITY_LENGTH;

    public static final int PRODUCER_IDENTITY_OFFSET;
    public static final int PRODUCER_PID_OFFSET;
    public static final int PRODUCER_START_TICKS_OFFSET;
    public static final int PRODUCER_HEARTBEAT_NS_OFFSET;
    public static final int PRODUCER_CLOSED_OFFSET;

    public static final int CONSUMER_IDENTITY_OFFSET;
    public static final int CONSUMER_PID_OFFSET;
    public static final int CONSUMER_START_TICKS_OFFSET;
    public static final int CONSUMER_HEARTBEAT_NS_OFFSET;
    public static final int CONSUMER_CLOSED_OFFSET;

    /** {@code tail_position}: written by the producer(s), alone on its cache line. */
    public static final int TAIL_POSITION_OFFSET;
    /** {@code head_position}: written by the consumer(s), alone on its cache line. */
    public static final int HEAD_POSITION_OFFSET;

    public static final int SCHEMA_LENGTH_OFFSET;
    public static final int SCHEMA_OFFSET_OFFSET;
    /** The value of {@code schema_offset}: where the schema bytes start. */
    public static final int SCHEMA_START;

    // ---------------------------------------------------------------------------------
    // DATA record header.
    // ---------------------------------------------------------------------------------
    public static final int RECORD_LENGTH_OFFSET;
    public static final int RECORD_TYPE_OFFSET;
    public static final int RECORD_BATCH_ID_OFFSET;
    public static final int RECORD_ROW_COUNT_OFFSET;
    public static final int RECORD_STATE_OFFSET;
    public static final int RECORD_META_OFFSET_OFFSET;
    public static final int RECORD_META_LENGTH_OFFSET;
    public static final int RECORD_BODY_OFFSET_OFFSET;
    public static final int RECORD_RESERVED_OFFSET;
    public static final int RECORD_BODY_LENGTH_OFFSET;
    public static final int RECORD_PRODUCED_UNIX_NS_OFFSET;
    public static final int RECORD_POSITION_OFFSET;
    /** Size of a DATA record header; the Arrow message prefix (or RAW body) starts here. */
    public static final int RECORD_HEADER_LENGTH;

    /** DATA record {@code type}: one Arrow IPC RecordBatch message. */
    public static final int TYPE_ARROW = 1;
    /** DATA record {@code type}: filler, skipped by consumers. */
    public static final int TYPE_PADDING = 2;
    /** DATA record {@code type}: opaque bytes at offset 64 (tests, control traffic). */
    public static final int TYPE_RAW = 3;

    /** DATA record {@code state} bit 0: nothing references the record any more. */
    public static final int STATE_RELEASED = 1;
    /** DATA record {@code state} bit 1: skipped as half-written by a dead producer. */
    public static final int STATE_ABORTED = 1 << 1;
    /** Every state bit this layout defines. */
    public static final int STATE_KNOWN_BITS = STATE_RELEASED | STATE_ABORTED;

    /** Arrow IPC continuation marker that starts an encapsulated message. */
    public static final int ARROW_CONTINUATION = 0xFFFFFFFF;

    // ---------------------------------------------------------------------------------
    // COMMIT record.
    // ---------------------------------------------------------------------------------
    public static final int COMMIT_LENGTH_OFFSET;
    public static final int COMMIT_TYPE_OFFSET;
    public static final int COMMIT_POSITION_OFFSET;
    public static final int COMMIT_FIRST_BATCH_ID_OFFSET;
    public static final int COMMIT_LAST_BATCH_ID_OFFSET;
    public static final int COMMIT_PARTITION_OFFSET;
    public static final int COMMIT_PRODUCER_PID_OFFSET;
    public static final int COMMIT_DATA_RING_INSTANCE_ID_OFFSET;
    public static final int COMMIT_PRODUCED_UNIX_NS_OFFSET;
    public static final int COMMIT_RESERVED_OFFSET;
    /** The fixed size of a commit record (and the {@code max_record_length} of a COMMIT ring). */
    public static final int COMMIT_RECORD_LENGTH;
    /** Commit slot {@code length} while a producer writes it. */
    public static final int COMMIT_LENGTH_CLAIMED;

    /** COMMIT record {@code type}: the batches were committed by Spark; acknowledge them. */
    public static final int COMMIT_TYPE_COMMIT = 1;
    /** COMMIT record {@code type}: given back unprocessed (ModifyAckDeadline 0). */
    public static final int COMMIT_TYPE_RELEASE = 2;
    /** COMMIT record {@code type}: processing failed (ModifyAckDeadline 0). */
    public static final int COMMIT_TYPE_NACK = 3;
    /** COMMIT record {@code type}: a slot abandoned by a stalled or dead producer; skip. */
    public static final int COMMIT_TYPE_PADDING = 4;

    static
    {
        int offset = 0;
        MAGIC_OFFSET = offset;
        offset += SIZE_OF_LONG;
        LAYOUT_VERSION_OFFSET = offset;
        offset += SIZE_OF_INT;
        RING_KIND_OFFSET = offset;
        offset += SIZE_OF_INT;
        HEADER_LENGTH_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_ALIGNMENT_OFFSET = offset;
        offset += SIZE_OF_INT;
        CAPACITY_OFFSET = offset;
        offset += SIZE_OF_LONG;
        FILE_LENGTH_OFFSET = offset;
        offset += SIZE_OF_LONG;
        RING_INSTANCE_ID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        CREATED_UNIX_NS_OFFSET = offset;
        offset += SIZE_OF_LONG;
        PARTITION_OFFSET = offset;
        offset += SIZE_OF_INT;
        MAX_RECORD_LENGTH_OFFSET = offset;
        offset += SIZE_OF_INT;
        STATIC_BLOCK_END = offset;

        offset = 0;
        IDENTITY_PID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        IDENTITY_START_TICKS_OFFSET = offset;
        offset += SIZE_OF_LONG;
        IDENTITY_HEARTBEAT_NS_OFFSET = offset;
        offset += SIZE_OF_LONG;
        IDENTITY_CLOSED_OFFSET = offset;
        offset += SIZE_OF_LONG;
        IDENTITY_LENGTH = offset;

        // One cache line each: static block, producer, consumer, tail, head.
        PRODUCER_IDENTITY_OFFSET = CACHE_LINE_LENGTH;
        PRODUCER_PID_OFFSET = PRODUCER_IDENTITY_OFFSET + IDENTITY_PID_OFFSET;
        PRODUCER_START_TICKS_OFFSET = PRODUCER_IDENTITY_OFFSET + IDENTITY_START_TICKS_OFFSET;
        PRODUCER_HEARTBEAT_NS_OFFSET = PRODUCER_IDENTITY_OFFSET + IDENTITY_HEARTBEAT_NS_OFFSET;
        PRODUCER_CLOSED_OFFSET = PRODUCER_IDENTITY_OFFSET + IDENTITY_CLOSED_OFFSET;

        CONSUMER_IDENTITY_OFFSET = PRODUCER_IDENTITY_OFFSET + CACHE_LINE_LENGTH;
        CONSUMER_PID_OFFSET = CONSUMER_IDENTITY_OFFSET + IDENTITY_PID_OFFSET;
        CONSUMER_START_TICKS_OFFSET = CONSUMER_IDENTITY_OFFSET + IDENTITY_START_TICKS_OFFSET;
        CONSUMER_HEARTBEAT_NS_OFFSET = CONSUMER_IDENTITY_OFFSET + IDENTITY_HEARTBEAT_NS_OFFSET;
        CONSUMER_CLOSED_OFFSET = CONSUMER_IDENTITY_OFFSET + IDENTITY_CLOSED_OFFSET;

        TAIL_POSITION_OFFSET = CONSUMER_IDENTITY_OFFSET + CACHE_LINE_LENGTH;
        HEAD_POSITION_OFFSET = TAIL_POSITION_OFFSET + CACHE_LINE_LENGTH;

        // Creator-written schema descriptor: eight cache lines in, then the schema bytes
        // on their own 1 KiB boundary.
        SCHEMA_LENGTH_OFFSET = CACHE_LINE_LENGTH * 8;
        SCHEMA_OFFSET_OFFSET = SCHEMA_LENGTH_OFFSET + SIZE_OF_INT;
        SCHEMA_START = CACHE_LINE_LENGTH * 16;

        offset = 0;
        RECORD_LENGTH_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_TYPE_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_BATCH_ID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        RECORD_ROW_COUNT_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_STATE_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_META_OFFSET_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_META_LENGTH_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_BODY_OFFSET_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_RESERVED_OFFSET = offset;
        offset += SIZE_OF_INT;
        RECORD_BODY_LENGTH_OFFSET = offset;
        offset += SIZE_OF_LONG;
        RECORD_PRODUCED_UNIX_NS_OFFSET = offset;
        offset += SIZE_OF_LONG;
        RECORD_POSITION_OFFSET = offset;
        offset += SIZE_OF_LONG;
        RECORD_HEADER_LENGTH = offset;

        offset = 0;
        COMMIT_LENGTH_OFFSET = offset;
        offset += SIZE_OF_INT;
        COMMIT_TYPE_OFFSET = offset;
        offset += SIZE_OF_INT;
        COMMIT_POSITION_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_FIRST_BATCH_ID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_LAST_BATCH_ID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_PARTITION_OFFSET = offset;
        offset += SIZE_OF_INT;
        COMMIT_PRODUCER_PID_OFFSET = offset;
        offset += SIZE_OF_INT;
        COMMIT_DATA_RING_INSTANCE_ID_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_PRODUCED_UNIX_NS_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_RESERVED_OFFSET = offset;
        offset += SIZE_OF_LONG;
        COMMIT_RECORD_LENGTH = offset;
        COMMIT_LENGTH_CLAIMED = -COMMIT_RECORD_LENGTH;
    }

    private RingDescriptor()
    {
    }

    /**
     * Rounds {@code value} up to a multiple of {@code alignment}, a power of two.
     *
     * @param value     a non-negative value.
     * @param alignment a power of two.
     * @return the smallest multiple of {@code alignment} that is {@code >= value}.
     */
    public static long align(final long value, final long alignment)
    {
        return (value + alignment - 1) & -alignment;
    }

    /**
     * Rounds {@code value} up to {@link #RECORD_ALIGNMENT}.
     *
     * @param value a non-negative value.
     * @return {@code value} rounded up to a multiple of 64.
     */
    public static long align64(final long value)
    {
        return align(value, RECORD_ALIGNMENT);
    }

    /**
     * The {@code max_record_length} a ring of this kind and capacity must carry.
     *
     * @param kind     {@link #KIND_DATA}, {@link #KIND_COMMIT} or {@link #KIND_OUTBOUND}.
     * @param capacity the ring area size.
     * @return {@code capacity / 2} for DATA/OUTBOUND, {@link #COMMIT_RECORD_LENGTH} for COMMIT.
     */
    public static long maxRecordLengthFor(final int kind, final long capacity)
    {
        return kind == KIND_COMMIT ? COMMIT_RECORD_LENGTH : capacity / 2;
    }

    /**
     * The name FORMAT.md gives a {@code ring_kind}.
     *
     * @param kind the {@code ring_kind} value.
     * @return {@code DATA}, {@code COMMIT}, {@code OUTBOUND} or {@code UNKNOWN(n)}.
     */
    public static String kindName(final int kind)
    {
        return switch (kind)
        {
            case KIND_DATA -> "DATA";
            case KIND_COMMIT -> "COMMIT";
            case KIND_OUTBOUND -> "OUTBOUND";
            default -> "UNKNOWN(" + kind + ")";
        };
    }

    /**
     * The name FORMAT.md gives a DATA record {@code type}.
     *
     * @param type the {@code type} value.
     * @return {@code ARROW}, {@code PADDING}, {@code RAW} or {@code UNKNOWN(n)}.
     */
    public static String recordTypeName(final int type)
    {
        return switch (type)
        {
            case TYPE_ARROW -> "ARROW";
            case TYPE_PADDING -> "PADDING";
            case TYPE_RAW -> "RAW";
            default -> "UNKNOWN(" + type + ")";
        };
    }

    /**
     * The name FORMAT.md gives a COMMIT record {@code type}.
     *
     * @param type the {@code type} value.
     * @return {@code COMMIT}, {@code RELEASE}, {@code NACK}, {@code PADDING} or {@code UNKNOWN(n)}.
     */
    public static String commitTypeName(final int type)
    {
        return switch (type)
        {
            case COMMIT_TYPE_COMMIT -> "COMMIT";
            case COMMIT_TYPE_RELEASE -> "RELEASE";
            case COMMIT_TYPE_NACK -> "NACK";
            case COMMIT_TYPE_PADDING -> "PADDING";
            default -> "UNKNOWN(" + type + ")";
        };
    }
}
