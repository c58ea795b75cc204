package dev.pubsubshm.spark.sink;

import java.nio.ByteBuffer;
import java.util.Arrays;

import com.google.flatbuffers.FlatBufferBuilder;
import org.apache.arrow.flatbuf.Buffer;
import org.apache.arrow.flatbuf.FieldNode;
import org.apache.arrow.flatbuf.Message;
import org.apache.arrow.flatbuf.MessageHeader;
import org.apache.arrow.flatbuf.MetadataVersion;
import org.apache.arrow.flatbuf.RecordBatch;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.catalyst.expressions.UnsafeRow;
import org.apache.spark.sql.catalyst.util.ArrayData;
import org.apache.spark.sql.catalyst.util.MapData;
import org.apache.spark.unsafe.Platform;
import org.apache.spark.unsafe.types.UTF8String;

import static dev.pubsubshm.ring.RingDescriptor.RECORD_HEADER_LENGTH;
import static dev.pubsubshm.ring.RingDescriptor.align64;

/**
 * Builds OUTBOUND record batches (FORMAT.md section 6) in place in the ring: each row's payload
 * is copied once, from Spark's row memory straight into the claimed ring record, where it
 * stays until pullerd has published it.
 *
 * <p><b>Layout.</b> A batch is claimed for its largest size before its first row. The body
 * starts with three zones of fixed size for {@code batchRows} rows: the {@code data} validity
 * bitmap, the {@code data} offsets (written row by row), then the {@code data} values (copied
 * row by row). When the batch closes, the small buffers (attributes, map entries, keys, values,
 * ordering keys), staged meanwhile in reused arrays, are appended after the data values, each on
 * 64 bytes, and the Arrow RecordBatch flatbuffer is written in front. Buffers keep the Arrow IPC
 * order; the gaps a batch with fewer rows leaves in the first two zones are legal (every buffer
 * is addressed by offset). The row path allocates nothing for {@link UnsafeRow}s: the payload,
 * the map and the ordering key are located from the row's offset-and-size words; other
 * {@link InternalRow}s go through {@code getBinary}/{@code getMap}.
 *
 * <p>Not thread-safe: the task's thread.
 */
final class OutboundBatchBuilder
{
    /** Field nodes of an OUTBOUND batch: data, attributes, entries, key, value, ordering_key. */
    static final int NODES = 6;
    /** Buffers of an OUTBOUND batch (FORMAT.md section 6). */
    static final int BUFFERS = 15;
    /** Bytes a map entry adds to a batch besides its key and value: two offsets and three validity bits, rounded up. */
    static final int ENTRY_OVERHEAD = 9;

    /** Waits for ring space; throws if the writer must give up (pullerd gone, publish failed, timeout). */
    interface SpaceWaiter
    {
        /**
         * Called while the ring has no room for a claim.
         *
         * @param needed  bytes the claim needs.
         * @param startNs when this claim started waiting ({@link System#nanoTime()}).
         */
        void await(long needed, long startNs);
    }

    private final OutboundRing ring;
    private final SpaceWaiter waiter;
    private final int dataOrdinal;
    private final int attrsOrdinal;
    private final int keyOrdinal;
    private final boolean dataIsString;
    private final int maxRows;
    private final long maxBytes;
    private final long lingerNs;

    private final int flatLength;
    private final int metaLength;
    private final int bodyOffset;
    private final int offsetsZone;
    private final int dataZone;
    private final long fixedSmall;
    private final int claimLength;
    private final FlatBufferBuilder fbb = new FlatBufferBuilder(1024);
    private final long[] bufOffset = new long[BUFFERS];
    private final long[] bufLength = new long[BUFFERS];

    // The open batch.
    private long record; // native address of the claimed record, 0 if none
    private long body;
    private int claimed;
    private int rows;
    private long dataBytes;
    private long accounted;
    private long firstRowNs;

    // Staging of the small buffers, reused.
    private final int[] attrOffsets;
    private int entries;
    private int[] keyOffsets = new int[1024];
    private int[] valueOffsets = new int[1024];
    private byte[] keyBytes = new byte[16 << 10];
    private byte[] valueBytes = new byte[16 << 10];
    private int keyLength;
    private int valueLength;
    private final byte[] okValid;
    private final int[] okOffsets;
    private byte[] okBytes = new byte[16 << 10];
    private int okLength;
    private int okNulls;

    // Totals.
    private long batches;
    private long totalRows;
    private long totalBytes;

    /**
     * @param ring     the OUTBOUND ring to fill.
     * @param columns  where the message parts are in the rows.
     * @param dataIsString whether {@code data} is a string column (else binary).
     * @param options  batch size and linger.
     * @param waiter   how to wait for space.
     * @throws IllegalArgumentException if a batch of the configured size cannot fit the ring.
     */
    OutboundBatchBuilder(final OutboundRing ring, final InputColumns columns, final boolean dataIsString,
        final SinkOptions options, final SpaceWaiter waiter)
    {
        this.ring = ring;
        this.waiter = waiter;
        this.dataOrdinal = columns.data();
        this.attrsOrdinal = columns.attributes();
        this.keyOrdinal = columns.orderingKey();
        this.dataIsString = dataIsString;
        this.maxRows = options.batchRows();
        this.maxBytes = options.batchBytes();
        this.lingerNs = options.lingerMs() * 1_000_000L;
        this.attrOffsets = new int[maxRows + 1];
        this.okOffsets = new int[maxRows + 1];
        this.okValid = new byte[(maxRows + 7) / 8];

        fbb.forceDefaults(true); // every field written: the flatbuffer has the same size for every batch
        this.flatLength = buildFlatbuffer(1, 1, 0);
        this.metaLength = 8 + (int)align(flatLength, 8);
        this.bodyOffset = (int)align64(RECORD_HEADER_LENGTH + metaLength);
        this.offsetsZone = (int)align64(bitmapBytes(maxRows));
        this.dataZone = offsetsZone + (int)align64(4L * (maxRows + 1));
        // Validity and offsets of attributes and ordering_key for maxRows rows, and the
        // alignment of the 15 buffers; the variable parts are counted in maxBytes.
        this.fixedSmall = 2 * align64(bitmapBytes(maxRows)) + 2 * align64(4L * (maxRows + 1)) + 16L * 64 + 8;
        final long claim = claimFor(maxBytes);
        if (claim > ring.maxRecordLength())
        {
            throw new IllegalArgumentException("pubsub-shm sink: a batch of " + SinkOptions.BATCH_ROWS + "=" + maxRows + " rows " +
                "and " + SinkOptions.BATCH_BYTES + "=" + maxBytes + " bytes needs records of up to " + claim + " bytes, but the " +
                "OUTBOUND ring \"" + ring.ring().path() + "\" takes at most " + ring.maxRecordLength() + " (half its capacity): " +
                "raise " + SinkOptions.RING_CAPACITY + " or lower the batch size");
        }
        this.claimLength = (int)claim;
    }

    private long claimFor(final long variableBytes)
    {
        return bodyOffset + dataZone + variableBytes + fixedSmall;
    }

    private static long bitmapBytes(final long n)
    {
        return (n + 7) / 8;
    }

    private static long align(final long v, final long a)
    {
        return (v + a - 1) & -a;
    }

    /**
     * Appends one row, closing the open batch first when the row would pass the row or byte
     * bound (or the linger time has passed).
     *
     * @param row the row, with the columns {@link InputColumns} resolved.
     * @throws IllegalArgumentException if the row cannot be a Pub/Sub message (null data, an
     *                                  attribute with a null value, no data and no attributes).
     */
    void append(final InternalRow row)
    {
        if (row.isNullAt(dataOrdinal))
        {
            throw new IllegalArgumentException("pubsub-shm sink: a row has a null \"data\"; every message needs a payload " +
                "(use an empty binary with attributes, or filter the nulls out)");
        }
        if (row instanceof UnsafeRow u)
        {
            appendUnsafe(u);
        }
        else
        {
            appendGeneric(row);
        }
    }

    private void appendUnsafe(final UnsafeRow u)
    {
        final Object base = u.getBaseObject();
        final long offset = u.getBaseOffset();
        final long dw = u.getLong(dataOrdinal);
        final long dataAddr = offset + (int)(dw >> 32);
        final int dataLen = (int)dw;

        long kArr = 0;
        long vArr = 0;
        long header = 0;
        int n = 0;
        long attrBytes = 0;
        if (attrsOrdinal >= 0 && !u.isNullAt(attrsOrdinal))
        {
            final long mw = u.getLong(attrsOrdinal);
            final long map = offset + (int)(mw >> 32);
            final long keyArraySize = Platform.getLong(base, map);
            kArr = map + 8;
            vArr = kArr + keyArraySize;
            n = (int)Platform.getLong(base, kArr);
            header = 8 + ((n + 63L) / 64) * 8;
            for (int i = 0; i < n; i++)
            {
                if ((Platform.getLong(base, vArr + 8 + (i >> 6) * 8L) & (1L << (i & 63))) != 0)
                {
                    throw nullValue(UTF8String.fromAddress(base, kArr + (int)(Platform.getLong(base, kArr + header + 8L * i) >> 32),
                        (int)Platform.getLong(base, kArr + header + 8L * i)));
                }
                attrBytes += (int)Platform.getLong(base, kArr + header + 8L * i) +
                    (int)Platform.getLong(base, vArr + header + 8L * i) + ENTRY_OVERHEAD;
            }
        }
        long okAddr = 0;
        int okLen = -1;
        if (keyOrdinal >= 0 && !u.isNullAt(keyOrdinal))
        {
            final long kw = u.getLong(keyOrdinal);
            okAddr = offset + (int)(kw >> 32);
            okLen = (int)kw;
        }
        if (dataLen == 0 && n == 0)
        {
            throw emptyMessage();
        }
        final long rowBytes = dataLen + attrBytes + Math.max(okLen, 0);
        open(rowBytes);
        writeData(base, dataAddr, dataLen);
        attrOffsets[rows] = entries;
        for (int i = 0; i < n; i++)
        {
            final long kw = Platform.getLong(base, kArr + header + 8L * i);
            final long vw = Platform.getLong(base, vArr + header + 8L * i);
            addEntry(base, kArr + (int)(kw >> 32), (int)kw, base, vArr + (int)(vw >> 32), (int)vw);
        }
        addOrderingKey(base, okAddr, okLen);
        closeRow(rowBytes);
    }

    private void appendGeneric(final InternalRow row)
    {
        final Object dataBase;
        final long dataAddr;
        final int dataLen;
        if (dataIsString)
        {
            final UTF8String s = row.getUTF8String(dataOrdinal);
            dataBase = s.getBaseObject();
            dataAddr = s.getBaseOffset();
            dataLen = s.numBytes();
        }
        else
        {
            final byte[] b = row.getBinary(dataOrdinal);
            dataBase = b;
            dataAddr = Platform.BYTE_ARRAY_OFFSET;
            dataLen = b.length;
        }
        ArrayData keys = null;
        ArrayData values = null;
        int n = 0;
        long attrBytes = 0;
        if (attrsOrdinal >= 0 && !row.isNullAt(attrsOrdinal))
        {
            final MapData map = row.getMap(attrsOrdinal);
            keys = map.keyArray();
            values = map.valueArray();
            n = map.numElements();
            for (int i = 0; i < n; i++)
            {
                if (values.isNullAt(i))
                {
                    throw nullValue(keys.getUTF8String(i));
                }
                attrBytes += keys.getUTF8String(i).numBytes() + values.getUTF8String(i).numBytes() + ENTRY_OVERHEAD;
            }
        }
        UTF8String ok = null;
        if (keyOrdinal >= 0 && !row.isNullAt(keyOrdinal))
        {
            ok = row.getUTF8String(keyOrdinal);
        }
        if (dataLen == 0 && n == 0)
        {
            throw emptyMessage();
        }
        final long rowBytes = dataLen + attrBytes + (ok == null ? 0 : ok.numBytes());
        open(rowBytes);
        writeData(dataBase, dataAddr, dataLen);
        attrOffsets[rows] = entries;
        for (int i = 0; i < n; i++)
        {
            final UTF8String k = keys.getUTF8String(i);
            final UTF8String v = values.getUTF8String(i);
            addEntry(k.getBaseObject(), k.getBaseOffset(), k.numBytes(), v.getBaseObject(), v.getBaseOffset(), v.numBytes());
        }
        if (ok == null)
        {
            addOrderingKey(null, 0, -1);
        }
        else
        {
            addOrderingKey(ok.getBaseObject(), ok.getBaseOffset(), ok.numBytes());
        }
        closeRow(rowBytes);
    }

    private static IllegalArgumentException nullValue(final UTF8String key)
    {
        return new IllegalArgumentException("pubsub-shm sink: attribute \"" + key + "\" of a row has a null value; Pub/Sub " +
            "attributes are strings (drop the entry or use an empty string, e.g. map_filter(attributes, (k, v) -> v IS NOT NULL))");
    }

    private static IllegalArgumentException emptyMessage()
    {
        return new IllegalArgumentException("pubsub-shm sink: a row has empty \"data\" and no attributes; Pub/Sub refuses " +
            "such a message (give it a payload or at least one attribute)");
    }

    /** Makes room for a row of rowBytes message bytes: closes the open batch if the row does not fit, claims if needed. */
    private void open(final long rowBytes)
    {
        if (record != 0 && (rows >= maxRows || accounted + rowBytes > maxBytes))
        {
            flush();
        }
        if (record != 0)
        {
            return;
        }
        final long need = rowBytes > maxBytes ? claimFor(rowBytes) : claimLength;
        if (need > ring.maxRecordLength())
        {
            throw new IllegalArgumentException("pubsub-shm sink: a message of " + rowBytes + " bytes (data, attributes and " +
                "ordering key) needs a ring record of " + need + " bytes; the OUTBOUND ring takes at most " +
                ring.maxRecordLength() + " (raise " + SinkOptions.RING_CAPACITY + "; Pub/Sub itself takes messages of at most " +
                "10 MB)");
        }
        long a = ring.claim((int)need);
        if (a == 0)
        {
            final long start = System.nanoTime();
            while ((a = ring.claim((int)need)) == 0)
            {
                waiter.await(need, start);
            }
        }
        record = a;
        body = a + bodyOffset;
        claimed = (int)need;
        firstRowNs = System.nanoTime();
    }

    private void writeData(final Object base, final long addr, final int len)
    {
        Platform.putInt(null, body + offsetsZone + 4L * rows, (int)dataBytes);
        Platform.copyMemory(base, addr, null, body + dataZone + dataBytes, len);
        dataBytes += len;
    }

    private void addEntry(final Object kBase, final long kAddr, final int kLen, final Object vBase, final long vAddr,
        final int vLen)
    {
        if (entries + 2 > keyOffsets.length)
        {
            keyOffsets = Arrays.copyOf(keyOffsets, keyOffsets.length * 2);
            valueOffsets = Arrays.copyOf(valueOffsets, valueOffsets.length * 2);
        }
        keyOffsets[entries] = keyLength;
        valueOffsets[entries] = valueLength;
        if (keyLength + kLen > keyBytes.length)
        {
            keyBytes = Arrays.copyOf(keyBytes, Math.max(keyBytes.length * 2, keyLength + kLen));
        }
        if (valueLength + vLen > valueBytes.length)
        {
            valueBytes = Arrays.copyOf(valueBytes, Math.max(valueBytes.length * 2, valueLength + vLen));
        }
        Platform.copyMemory(kBase, kAddr, keyBytes, Platform.BYTE_ARRAY_OFFSET + keyLength, kLen);
        Platform.copyMemory(vBase, vAddr, valueBytes, Platform.BYTE_ARRAY_OFFSET + valueLength, vLen);
        keyLength += kLen;
        valueLength += vLen;
        entries++;
    }

    /** Stages the ordering key of the current row; len &lt; 0 or 0 is a null (Pub/Sub: no key). */
    private void addOrderingKey(final Object base, final long addr, final int len)
    {
        okOffsets[rows] = okLength;
        if (len <= 0)
        {
            okNulls++;
            return;
        }
        if (okLength + len > okBytes.length)
        {
            okBytes = Arrays.copyOf(okBytes, Math.max(okBytes.length * 2, okLength + len));
        }
        Platform.copyMemory(base, addr, okBytes, Platform.BYTE_ARRAY_OFFSET + okLength, len);
        okLength += len;
        okValid[rows >> 3] |= (byte)(1 << (rows & 7));
    }

    private void closeRow(final long rowBytes)
    {
        rows++;
        accounted += rowBytes;
        totalRows++;
        totalBytes += rowBytes;
        if (lingerNs > 0 && (rows & 63) == 0 && System.nanoTime() - firstRowNs >= lingerNs)
        {
            flush();
        }
    }

    /**
     * Hands the open batch to pullerd (publishes it in the ring); nothing if no row is open.
     *
     * @return the batch id, or 0 if there was nothing to flush.
     */
    long flush()
    {
        if (record == 0)
        {
            return 0;
        }
        final int n = rows;
        final long b = body;
        // data: validity (all valid), offsets (the last one now), values (in place)
        fillValid(b, n);
        Platform.putInt(null, b + offsetsZone + 4L * n, (int)dataBytes);
        set(0, 0, bitmapBytes(n));
        set(1, offsetsZone, 4L * (n + 1));
        set(2, dataZone, dataBytes);
        long c = align64(dataZone + dataBytes);
        attrOffsets[n] = entries;
        keyOffsets[entries] = keyLength;
        valueOffsets[entries] = valueLength;
        okOffsets[n] = okLength;
        c = putValid(3, c, n);
        c = putInts(4, c, attrOffsets, n + 1);
        c = putValid(5, c, entries);
        c = putValid(6, c, entries);
        c = putInts(7, c, keyOffsets, entries + 1);
        c = putBytes(8, c, keyBytes, keyLength);
        c = putValid(9, c, entries);
        c = putInts(10, c, valueOffsets, entries + 1);
        c = putBytes(11, c, valueBytes, valueLength);
        if (okNulls == 0)
        {
            c = putValid(12, c, n);
        }
        else
        {
            c = putBytes(12, c, okValid, (int)bitmapBytes(n));
        }
        c = putInts(13, c, okOffsets, n + 1);
        c = putBytes(14, c, okBytes, okLength);
        final long bodyLength = c;
        if (bodyOffset + bodyLength > claimed)
        {
            throw new IllegalStateException("bug: batch of " + n + " rows needs " + (bodyOffset + bodyLength) +
                " bytes, more than its claim of " + claimed);
        }
        final int size = buildFlatbuffer(n, entries, bodyLength);
        if (size != flatLength)
        {
            throw new IllegalStateException("bug: RecordBatch flatbuffer of " + size + " bytes, " + flatLength + " expected");
        }
        final long meta = record + RECORD_HEADER_LENGTH;
        Platform.putInt(null, meta, 0xFFFFFFFF);
        Platform.putInt(null, meta + 4, metaLength - 8);
        final ByteBuffer fb = fbb.dataBuffer();
        Platform.copyMemory(fb.array(), Platform.BYTE_ARRAY_OFFSET + fb.arrayOffset() + fb.position(), null, meta + 8, size);
        Platform.setMemory(meta + 8 + size, (byte)0, bodyOffset - RECORD_HEADER_LENGTH - 8 - size);
        final long id = ring.commit(n, metaLength, bodyOffset, bodyLength);
        batches++;
        reset();
        return id;
    }

    private void reset()
    {
        Arrays.fill(okValid, 0, (int)bitmapBytes(rows), (byte)0);
        record = 0;
        body = 0;
        rows = 0;
        dataBytes = 0;
        accounted = 0;
        entries = 0;
        keyLength = 0;
        valueLength = 0;
        okLength = 0;
        okNulls = 0;
    }

    /** Abandons the open batch (abort): nothing of it was published. */
    void abandon()
    {
        if (record != 0)
        {
            ring.abandon();
            reset();
        }
    }

    private void set(final int i, final long offset, final long length)
    {
        bufOffset[i] = offset;
        bufLength[i] = length;
    }

    private static void fillValid(final long addr, final long n)
    {
        Platform.setMemory(addr, (byte)0xFF, n / 8);
        if ((n & 7) != 0)
        {
            Platform.putByte(null, addr + n / 8, (byte)((1 << (n & 7)) - 1));
        }
    }

    private long putValid(final int i, final long c, final long n)
    {
        fillValid(body + c, n);
        set(i, c, bitmapBytes(n));
        return c + align64(bitmapBytes(n));
    }

    private long putInts(final int i, final long c, final int[] src, final int count)
    {
        Platform.copyMemory(src, Platform.INT_ARRAY_OFFSET, null, body + c, 4L * count);
        set(i, c, 4L * count);
        return c + align64(4L * count);
    }

    private long putBytes(final int i, final long c, final byte[] src, final int count)
    {
        Platform.copyMemory(src, Platform.BYTE_ARRAY_OFFSET, null, body + c, count);
        set(i, c, count);
        return c + align64(count);
    }

    /** Builds the RecordBatch message into fbb and returns its size. */
    private int buildFlatbuffer(final int n, final int e, final long bodyLength)
    {
        fbb.clear();
        RecordBatch.startBuffersVector(fbb, BUFFERS);
        for (int i = BUFFERS - 1; i >= 0; i--)
        {
            Buffer.createBuffer(fbb, bufOffset[i], bufLength[i]);
        }
        final int buffers = fbb.endVector();
        RecordBatch.startNodesVector(fbb, NODES);
        // depth first, prepended in reverse: ordering_key, value, key, entries, attributes, data
        FieldNode.createFieldNode(fbb, n, okNulls);
        FieldNode.createFieldNode(fbb, e, 0);
        FieldNode.createFieldNode(fbb, e, 0);
        FieldNode.createFieldNode(fbb, e, 0);
        FieldNode.createFieldNode(fbb, n, 0);
        FieldNode.createFieldNode(fbb, n, 0);
        final int nodes = fbb.endVector();
        RecordBatch.startRecordBatch(fbb);
        RecordBatch.addLength(fbb, n);
        RecordBatch.addNodes(fbb, nodes);
        RecordBatch.addBuffers(fbb, buffers);
        final int rb = RecordBatch.endRecordBatch(fbb);
        Message.startMessage(fbb);
        Message.addVersion(fbb, MetadataVersion.V5);
        Message.addHeaderType(fbb, MessageHeader.RecordBatch);
        Message.addHeader(fbb, rb);
        Message.addBodyLength(fbb, bodyLength);
        final int msg = Message.endMessage(fbb);
        fbb.finish(msg);
        return fbb.offset();
    }

    /** @return rows in the open batch. */
    int pendingRows()
    {
        return rows;
    }

    /** @return batches handed to pullerd. */
    long batches()
    {
        return batches;
    }

    /** @return rows appended (all batches, the open one included). */
    long totalRows()
    {
        return totalRows;
    }

    /** @return message bytes appended (data, attributes, ordering keys). */
    long totalBytes()
    {
        return totalBytes;
    }

    /** @return the claim size of a standard batch (for tests). */
    int claimLength()
    {
        return claimLength;
    }
}
