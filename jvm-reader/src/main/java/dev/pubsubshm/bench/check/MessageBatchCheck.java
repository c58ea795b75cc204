package dev.pubsubshm.bench.check;

import java.nio.ByteBuffer;

import org.apache.arrow.memory.ArrowBuf;
import org.apache.arrow.memory.util.MemoryUtil;
import org.apache.arrow.vector.TimeStampMicroTZVector;
import org.apache.arrow.vector.VarBinaryVector;
import org.apache.arrow.vector.VarCharVector;
import org.apache.arrow.vector.VectorSchemaRoot;

import dev.pubsubshm.bench.common.LatencyHistogram;
import dev.pubsubshm.bench.common.PayloadCheck;

/**
 * Checks record batches of the message schema (docs/FORMAT.md section 5) that the
 * synthetic source (bench/synth) produced, whatever carried them (ring, socket, Flight):
 * the checksum of every payload byte ({@link PayloadCheck}), the bytes and rows, the
 * latency from publish_time, and optionally that message ids (decimal counters from 0,
 * per source) arrive in sequence, none lost, none twice.
 *
 * <p>Latency is recorded once per batch for all its rows, from the batch's first row: the
 * oldest, so every row counts with the age of the oldest row of its batch (an upper bound).
 *
 * <p>With a view given (a ByteBuffer over memory that holds the payloads, e.g. a ring
 * mapping) nothing is allocated per batch; otherwise one ByteBuffer object per batch.
 * Not thread-safe: one per reading thread (they may share a histogram under the caller's
 * lock).
 */
public final class MessageBatchCheck
{
    /** Column indexes of the message schema. */
    public static final int COL_MESSAGE_ID = 0;
    public static final int COL_PUBLISH_TIME = 1;
    public static final int COL_DATA = 2;

    private final PayloadCheck payload = new PayloadCheck();
    private final LatencyHistogram latency;
    private final boolean checkIds;
    private long msgs;
    private long bytes;
    private long batches;
    private long failures;
    private long nextId;
    private long lost;
    private long duplicates;
    private long badIds;

    /**
     * @param latency  where latencies go
     * @param checkIds whether message ids must be 0, 1, 2, ... in order
     */
    public MessageBatchCheck(final LatencyHistogram latency, final boolean checkIds)
    {
        this.latency = latency;
        this.checkIds = checkIds;
    }

    /**
     * Checks the batch in {@code root}.
     *
     * @param view        a buffer over memory that may hold the payloads (null: none)
     * @param viewAddress the native address of {@code view}'s index 0
     * @param nowMicros   the wall-clock time of reading, microseconds since the epoch
     */
    public void check(final VectorSchemaRoot root, final ByteBuffer view, final long viewAddress, final long nowMicros)
    {
        final int rows = root.getRowCount();
        batches++;
        if (rows == 0)
        {
            return;
        }
        final VarBinaryVector data = (VarBinaryVector)root.getVector(COL_DATA);
        final ArrowBuf offsets = data.getOffsetBuffer();
        final ArrowBuf values = data.getDataBuffer();
        final long valuesAddress = values.memoryAddress();
        final int end = offsets.getInt((long)rows * 4);
        ByteBuffer v = view;
        long base;
        if (view != null && valuesAddress >= viewAddress && valuesAddress + end <= viewAddress + view.capacity())
        {
            base = valuesAddress - viewAddress;
        }
        else
        {
            v = MemoryUtil.directBuffer(valuesAddress, (int)Math.max(end, 0));
            base = 0;
        }
        int start = offsets.getInt(0);
        for (int r = 0; r < rows; r++)
        {
            final int e = offsets.getInt((long)(r + 1) * 4);
            if (!payload.verify(v, (int)(base + start), (int)(base + e)))
            {
                failures++;
            }
            bytes += e - start;
            start = e;
        }
        final TimeStampMicroTZVector ts = (TimeStampMicroTZVector)root.getVector(COL_PUBLISH_TIME);
        latency.record(nowMicros - ts.get(0), rows);
        if (checkIds)
        {
            checkIds((VarCharVector)root.getVector(COL_MESSAGE_ID), rows);
        }
        msgs += rows;
    }

    private void checkIds(final VarCharVector ids, final int rows)
    {
        final ArrowBuf offsets = ids.getOffsetBuffer();
        final ArrowBuf values = ids.getDataBuffer();
        int start = offsets.getInt(0);
        for (int r = 0; r < rows; r++)
        {
            final int end = offsets.getInt((long)(r + 1) * 4);
            long id = 0;
            boolean ok = end > start && end - start <= 18;
            for (int k = start; ok && k < end; k++)
            {
                final int d = values.getByte(k) - '0';
                ok = d >= 0 && d <= 9;
                id = id * 10 + d;
            }
            start = end;
            if (!ok)
            {
                badIds++;
            }
            else if (id == nextId)
            {
                nextId++;
            }
            else if (id > nextId)
            {
                lost += id - nextId;
                nextId = id + 1;
            }
            else
            {
                duplicates++;
            }
        }
    }

    /** @return rows checked */
    public long msgs()
    {
        return msgs;
    }

    /** @return payload bytes checked */
    public long bytes()
    {
        return bytes;
    }

    /** @return batches checked (empty ones included) */
    public long batches()
    {
        return batches;
    }

    /** @return payloads whose checksum did not hold */
    public long failures()
    {
        return failures;
    }

    /** @return ids skipped (messages lost), with id checks on */
    public long lost()
    {
        return lost;
    }

    /** @return ids seen before (messages read twice or out of order), with id checks on */
    public long duplicates()
    {
        return duplicates;
    }

    /** @return ids that were not decimal counters, with id checks on */
    public long badIds()
    {
        return badIds;
    }

    /** @return the next id expected, with id checks on: the count of messages read in sequence */
    public long nextId()
    {
        return nextId;
    }
}
