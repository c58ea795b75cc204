package dev.pubsubshm.ring;

import java.nio.file.Path;

import static dev.pubsubshm.ring.RingDescriptor.*;

/**
 * The checks of FORMAT.md section 3 on a DATA record header, shared by the consumer
 * ({@link DataRingReader}) and the read-only scanner ({@link DataRingScanner}): every length
 * and offset is proven inside the ring area before anything behind it is read. Each
 * violation is a {@link RingFormatException} naming the position, field and value.
 * Stateless apart from the ring's fixed geometry; allocates nothing unless it throws.
 */
final class RecordHeaderChecks
{
    private final RingFile ring;
    private final Path path;
    private final long capacity;
    private final long mask;
    private final int maxRecordLength;

    RecordHeaderChecks(final RingFile ring, final Path path)
    {
        this.ring = ring;
        this.path = path;
        this.capacity = ring.capacity();
        this.mask = capacity - 1;
        this.maxRecordLength = ring.maxRecordLength();
    }

    void checkLengthBounds(final long p, final int length, final long absLength, final long tail)
    {
        if (absLength < RECORD_HEADER_LENGTH || absLength > maxRecordLength)
        {
            throw RingFormatException.record(path, p, "length", length,
                "|length| must be in [" + RECORD_HEADER_LENGTH + ", max_record_length=" + maxRecordLength + "]");
        }
        final long aligned = align64(absLength);
        final long index = p & mask;
        if (index + aligned > capacity)
        {
            throw RingFormatException.record(path, p, "length", length,
                "crosses the end of the ring area (index " + index + " + " + aligned + " > capacity " + capacity + ")");
        }
        if (p + aligned > tail)
        {
            throw RingFormatException.record(path, p, "length", length,
                "extends past tail_position=" + tail);
        }
    }

    /**
     * Validates a published record (positive {@code length}) against FORMAT.md section 3.
     * Reads only the 64-byte header, plus the 8-byte Arrow prefix once it is proven to lie
     * inside the record.
     *
     * @param lastBatchId the batch id of the previous ARROW/RAW record, 0 to skip the
     *                    consecutiveness check.
     * @return the record type.
     */
    int validate(final long p, final int offset, final int length, final long tail, final long lastBatchId)
    {
        checkLengthBounds(p, length, length, tail);
        final long storedPosition = ring.getLong(offset + RECORD_POSITION_OFFSET);
        if (storedPosition != p)
        {
            throw RingFormatException.record(path, p, "position", storedPosition,
                "does not match the position it was read at (stale or foreign record)");
        }
        final int type = ring.getInt(offset + RECORD_TYPE_OFFSET);
        if (type == TYPE_PADDING)
        {
            if ((length & (RECORD_ALIGNMENT - 1)) != 0)
            {
                throw RingFormatException.record(path, p, "length", length,
                    "a PADDING record's length is a multiple of " + RECORD_ALIGNMENT);
            }
            return type;
        }
        if (type != TYPE_ARROW && type != TYPE_RAW)
        {
            throw RingFormatException.record(path, p, "type", type, "must be 1 (ARROW), 2 (PADDING) or 3 (RAW)");
        }
        final int state = ring.getInt(offset + RECORD_STATE_OFFSET);
        if ((state & ~STATE_KNOWN_BITS) != 0)
        {
            throw RingFormatException.record(path, p, "state", state,
                "only bits 0 (RELEASED) and 1 (ABORTED) are defined");
        }
        final long batchId = ring.getLong(offset + RECORD_BATCH_ID_OFFSET);
        if (batchId < 1)
        {
            throw RingFormatException.record(path, p, "batch_id", batchId, "must be >= 1");
        }
        if (lastBatchId != 0 && batchId != lastBatchId + 1)
        {
            throw RingFormatException.record(path, p, "batch_id", batchId,
                "must follow the previous record's batch_id " + lastBatchId + " (consecutive across ARROW and RAW records)");
        }
        final int rowCount = ring.getInt(offset + RECORD_ROW_COUNT_OFFSET);
        if (rowCount < 0)
        {
            throw RingFormatException.record(path, p, "row_count", rowCount, "must be >= 0");
        }
        final long metaOffset = Integer.toUnsignedLong(ring.getInt(offset + RECORD_META_OFFSET_OFFSET));
        if (metaOffset != RECORD_HEADER_LENGTH)
        {
            throw RingFormatException.record(path, p, "meta_offset", metaOffset, "must be " + RECORD_HEADER_LENGTH);
        }
        final long metaLength = Integer.toUnsignedLong(ring.getInt(offset + RECORD_META_LENGTH_OFFSET));
        final long bodyOffset = Integer.toUnsignedLong(ring.getInt(offset + RECORD_BODY_OFFSET_OFFSET));
        if (type == TYPE_RAW)
        {
            if (metaLength != 0)
            {
                throw RingFormatException.record(path, p, "meta_length", metaLength, "must be 0 for RAW");
            }
            if (bodyOffset != RECORD_HEADER_LENGTH)
            {
                throw RingFormatException.record(path, p, "body_offset", bodyOffset,
                    "must be " + RECORD_HEADER_LENGTH + " for RAW");
            }
        }
        else
        {
            if (metaLength < 8 || (metaLength & 7) != 0)
            {
                throw RingFormatException.record(path, p, "meta_length", metaLength,
                    "must be a multiple of 8, at least 8, for ARROW");
            }
            final long expected = align64(RECORD_HEADER_LENGTH + metaLength);
            if (bodyOffset != expected)
            {
                throw RingFormatException.record(path, p, "body_offset", bodyOffset,
                    "must be align64(64 + meta_length=" + metaLength + ") = " + expected);
            }
        }
        final long bodyLength = ring.getLong(offset + RECORD_BODY_LENGTH_OFFSET);
        if (bodyLength < 0 || bodyOffset + bodyLength != length)
        {
            throw RingFormatException.record(path, p, "body_length", bodyLength,
                "body_offset(" + bodyOffset + ") + body_length must equal length(" + length + ")");
        }
        if (type == TYPE_ARROW)
        {
            // Inside the record: 64 + meta_length <= body_offset <= length.
            final int prefix = offset + RECORD_HEADER_LENGTH;
            final int continuation = ring.getInt(prefix);
            if (continuation != ARROW_CONTINUATION)
            {
                throw RingFormatException.record(path, p, "arrow continuation", "0x" + Integer.toHexString(continuation),
                    "must be 0xffffffff");
            }
            final int flatbufferSize = ring.getInt(prefix + SIZE_OF_INT);
            if (flatbufferSize != metaLength - 8)
            {
                throw RingFormatException.record(path, p, "arrow metadata size", flatbufferSize,
                    "must equal meta_length - 8 = " + (metaLength - 8));
            }
        }
        return type;
    }
}
