package dev.pubsubshm.ring;

import java.nio.ByteBuffer;

import static dev.pubsubshm.ring.RingDescriptor.align64;
import static dev.pubsubshm.ring.RingDescriptor.recordTypeName;

/**
 * A reusable, mutable view of one complete DATA record, filled by
 * {@link DataRingReader#poll(DataRecord)} after the record passed every check of FORMAT.md
 * section 3. It copies the header fields; the meta and body stay in the shared mapping and
 * are reached through {@link #bodyAddress()}, {@link #bodyBuffer()} and friends (no copy).
 *
 * <p><b>Validity.</b> The header values stay in this object until the next poll into it.
 * The payload memory the view points at is the producer's to overwrite as soon as the record
 * is released ({@link DataRingReader#release(long)}), and gone when the ring is unmapped:
 * read it before releasing, or keep a {@link RingFile#retain() reference} and delay the
 * release for as long as something (an Arrow buffer) points into it.
 *
 * <p>Not thread-safe: one view per polling thread. Polling allocates nothing once a view has
 * been bound to a ring (the first poll creates its two {@link ByteBuffer} views).
 */
public final class DataRecord
{
    private RingFile ring;
    private ByteBuffer bodyView;
    private ByteBuffer metaView;
    private long position = -1;
    private int recordOffset;
    private int length;
    private int type;
    private long batchId;
    private int rowCount;
    private int state;
    private int metaOffset;
    private int metaLength;
    private int bodyOffset;
    private long bodyLength;
    private long producedUnixNs;

    void set(
        final RingFile ring,
        final long position,
        final int recordOffset,
        final int length,
        final int type,
        final long batchId,
        final int rowCount,
        final int state,
        final int metaOffset,
        final int metaLength,
        final int bodyOffset,
        final long bodyLength,
        final long producedUnixNs)
    {
        if (this.ring != ring)
        {
            this.ring = ring;
            this.bodyView = null;
            this.metaView = null;
        }
        this.position = position;
        this.recordOffset = recordOffset;
        this.length = length;
        this.type = type;
        this.batchId = batchId;
        this.rowCount = rowCount;
        this.state = state;
        this.metaOffset = metaOffset;
        this.metaLength = metaLength;
        this.bodyOffset = bodyOffset;
        this.bodyLength = bodyLength;
        this.producedUnixNs = producedUnixNs;
    }

    /**
     * The ring the record lives in.
     *
     * @return the ring, or {@code null} before the first poll.
     */
    public RingFile ring()
    {
        return ring;
    }

    /**
     * The record's stream position: the handle to {@link DataRingReader#release(long)} it.
     *
     * @return a multiple of 64, or -1 before the first poll.
     */
    public long position()
    {
        return position;
    }

    /**
     * File offset of the record's first byte (its header).
     *
     * @return {@code header_length + (position & (capacity - 1))}.
     */
    public int recordOffset()
    {
        return recordOffset;
    }

    /**
     * {@code length}: record bytes before alignment.
     *
     * @return {@code body_offset + body_length}.
     */
    public int length()
    {
        return length;
    }

    /**
     * Bytes the record occupies in the ring.
     *
     * @return {@code align64(length)}.
     */
    public long alignedLength()
    {
        return align64(length);
    }

    /**
     * {@code type}.
     *
     * @return {@link RingDescriptor#TYPE_ARROW} or {@link RingDescriptor#TYPE_RAW} (PADDING is never returned).
     */
    public int type()
    {
        return type;
    }

    /**
     * {@code batch_id}.
     *
     * @return 1, 2, 3, ... per ring incarnation.
     */
    public long batchId()
    {
        return batchId;
    }

    /**
     * {@code row_count}.
     *
     * @return rows in the batch.
     */
    public int rowCount()
    {
        return rowCount;
    }

    /**
     * {@code state} as read when polled (RELEASED set means a previous consumer already
     * released the record without head passing it).
     *
     * @return state bits.
     */
    public int state()
    {
        return state;
    }

    /**
     * {@code meta_offset}.
     *
     * @return always 64.
     */
    public int metaOffset()
    {
        return metaOffset;
    }

    /**
     * {@code meta_length}: bytes of the encapsulated Arrow message prefix.
     *
     * @return 0 for RAW.
     */
    public int metaLength()
    {
        return metaLength;
    }

    /**
     * {@code body_offset}, from the record start.
     *
     * @return a multiple of 64.
     */
    public int bodyOffset()
    {
        return bodyOffset;
    }

    /**
     * {@code body_length}.
     *
     * @return body bytes.
     */
    public long bodyLength()
    {
        return bodyLength;
    }

    /**
     * {@code produced_unix_ns}: wall clock when the producer committed the record.
     *
     * @return nanoseconds since the epoch.
     */
    public long producedUnixNs()
    {
        return producedUnixNs;
    }

    /**
     * Native address of the body's first byte. Valid until the record is released.
     *
     * @return an address inside the mapping, 64-byte aligned.
     */
    public long bodyAddress()
    {
        return ring.address() + recordOffset + bodyOffset;
    }

    /**
     * Native address of the Arrow message prefix ({@code 0xFFFFFFFF}, size, flatbuffer).
     * Valid until the record is released.
     *
     * @return an address inside the mapping.
     */
    public long metaAddress()
    {
        return ring.address() + recordOffset + metaOffset;
    }

    /**
     * File offset of the body's first byte.
     *
     * @return {@code recordOffset() + bodyOffset()}.
     */
    public int bodyFileOffset()
    {
        return recordOffset + bodyOffset;
    }

    /**
     * The body as a little-endian view of the mapping: {@code position()} is the body's first
     * byte and {@code limit()} its end; absolute indexes are file offsets. The same buffer
     * object is returned on every call (no allocation) with position and limit reset; it is
     * valid until the record is released.
     *
     * @return the shared body view.
     */
    public ByteBuffer bodyBuffer()
    {
        ByteBuffer view = bodyView;
        if (view == null)
        {
            view = ring.duplicateBuffer();
            bodyView = view;
        }
        final int start = recordOffset + bodyOffset;
        view.limit(view.capacity()).position(start).limit(start + (int)bodyLength);
        return view;
    }

    /**
     * The Arrow message prefix as a view of the mapping, like {@link #bodyBuffer()} (a second,
     * independent buffer object).
     *
     * @return the shared meta view.
     */
    public ByteBuffer metaBuffer()
    {
        ByteBuffer view = metaView;
        if (view == null)
        {
            view = ring.duplicateBuffer();
            metaView = view;
        }
        final int start = recordOffset + metaOffset;
        view.limit(view.capacity()).position(start).limit(start + metaLength);
        return view;
    }

    @Override
    public String toString()
    {
        return "DataRecord{position=" + position + ", type=" + recordTypeName(type) + ", batch_id=" + batchId +
            ", row_count=" + rowCount + ", length=" + length + ", state=" + state + ", meta_length=" + metaLength +
            ", body_offset=" + bodyOffset + ", body_length=" + bodyLength + ", produced_unix_ns=" + producedUnixNs + '}';
    }
}
