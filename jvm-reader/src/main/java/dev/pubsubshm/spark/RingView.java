package dev.pubsubshm.spark;

import java.io.Serializable;
import java.util.Arrays;

/**
 * What one DATA ring held when it was scanned: its identity, the batch ids between the head
 * and the last complete record, their totals (the backlog: everything in the ring is
 * uncommitted, since records are released only at commit), and per batch its rows, Arrow
 * bytes and position for a contiguous range of batch ids (the "detail") that planning uses.
 * Immutable and serializable: executors send views of their host's rings to the driver.
 *
 * <p>Batch ids are consecutive within an incarnation, so the detail is three parallel arrays
 * indexed by {@code batchId - detailFirstBatchId}. RAW records (test and control traffic)
 * count as batches of their row count.
 */
public final class RingView implements Serializable
{
    private static final long serialVersionUID = 1L;
    private static final int[] NO_INTS = new int[0];
    private static final long[] NO_LONGS = new long[0];

    private final String host;
    private final String path;
    private final int partition;
    private final long instanceId;
    private final long firstBatchId;
    private final long lastBatchId;
    private final long unackedRows;
    private final long unackedBytes;
    private final long oldestProducedUnixNs;
    private final long detailFirstBatchId;
    private final int[] rows;
    private final long[] bytes;
    private final long[] positions;

    /**
     * @param host                 the host holding the ring (Spark's name for it).
     * @param path                 the ring file on that host.
     * @param partition            the ring's virtual partition.
     * @param instanceId           its {@code ring_instance_id}.
     * @param firstBatchId         the batch id at the head, 0 if the ring holds no complete record.
     * @param lastBatchId          the last complete batch id, 0 if none.
     * @param unackedRows          rows from the head to the last complete record.
     * @param unackedBytes         Arrow bytes of those records.
     * @param oldestProducedUnixNs {@code produced_unix_ns} of the record at the head, 0 if none.
     * @param detailFirstBatchId   batch id of {@code rows[0]} (if any rows).
     * @param rows                 rows per batch (not copied: the caller gives up the array).
     * @param bytes                Arrow body bytes per batch (not copied).
     * @param positions            stream position per batch (not copied).
     */
    public RingView(
        final String host,
        final String path,
        final int partition,
        final long instanceId,
        final long firstBatchId,
        final long lastBatchId,
        final long unackedRows,
        final long unackedBytes,
        final long oldestProducedUnixNs,
        final long detailFirstBatchId,
        final int[] rows,
        final long[] bytes,
        final long[] positions)
    {
        if (rows.length != bytes.length || rows.length != positions.length)
        {
            throw new IllegalArgumentException("detail arrays of different lengths: " + rows.length + "/" + bytes.length +
                "/" + positions.length);
        }
        if (rows.length > 0 && detailFirstBatchId + rows.length - 1 != lastBatchId)
        {
            throw new IllegalArgumentException("detail " + detailFirstBatchId + "+" + rows.length + " does not end at " +
                "lastBatchId=" + lastBatchId);
        }
        this.host = host;
        this.path = path;
        this.partition = partition;
        this.instanceId = instanceId;
        this.firstBatchId = firstBatchId;
        this.lastBatchId = lastBatchId;
        this.unackedRows = unackedRows;
        this.unackedBytes = unackedBytes;
        this.oldestProducedUnixNs = oldestProducedUnixNs;
        this.detailFirstBatchId = detailFirstBatchId;
        this.rows = rows;
        this.bytes = bytes;
        this.positions = positions;
    }

    /** @return the host holding the ring. */
    public String host()
    {
        return host;
    }

    /** @return the ring file on its host. */
    public String path()
    {
        return path;
    }

    /** @return the virtual partition. */
    public int partition()
    {
        return partition;
    }

    /** @return the {@code ring_instance_id}. */
    public long instanceId()
    {
        return instanceId;
    }

    /** @return the batch id at the head, 0 if the ring holds no complete record. */
    public long firstBatchId()
    {
        return firstBatchId;
    }

    /** @return the last complete batch id, 0 if none. */
    public long lastBatchId()
    {
        return lastBatchId;
    }

    /** @return rows in the ring (not yet committed). */
    public long unackedRows()
    {
        return unackedRows;
    }

    /** @return Arrow bytes in the ring (not yet committed). */
    public long unackedBytes()
    {
        return unackedBytes;
    }

    /** @return {@code produced_unix_ns} of the oldest record in the ring, 0 if empty. */
    public long oldestProducedUnixNs()
    {
        return oldestProducedUnixNs;
    }

    /** @return the first batch id with detail, meaningful when {@link #detailCount()} > 0. */
    public long detailFirstBatchId()
    {
        return detailFirstBatchId;
    }

    /** @return the number of batches with detail. */
    public int detailCount()
    {
        return rows.length;
    }

    /**
     * Whether the detail covers a batch.
     *
     * @param batchId a batch id.
     * @return {@code true} if rows, bytes and position of {@code batchId} are known.
     */
    public boolean hasDetail(final long batchId)
    {
        return rows.length > 0 && batchId >= detailFirstBatchId && batchId <= lastBatchId;
    }

    /**
     * @param batchId a batch id with {@link #hasDetail detail}.
     * @return its rows.
     */
    public int rows(final long batchId)
    {
        return rows[index(batchId)];
    }

    /**
     * @param batchId a batch id with {@link #hasDetail detail}.
     * @return its Arrow body bytes.
     */
    public long bytes(final long batchId)
    {
        return bytes[index(batchId)];
    }

    /**
     * @param batchId a batch id with {@link #hasDetail detail}.
     * @return its stream position.
     */
    public long position(final long batchId)
    {
        return positions[index(batchId)];
    }

    private int index(final long batchId)
    {
        if (!hasDetail(batchId))
        {
            throw new IllegalArgumentException("batch " + batchId + " of ring " + path + " has no detail (detail " +
                detailFirstBatchId + ".." + lastBatchId + ", " + rows.length + " batches)");
        }
        return (int)(batchId - detailFirstBatchId);
    }

    /**
     * Rows of the batches after {@code batchId} (the part of the backlog not yet planned).
     *
     * @param batchId a batch id (batches up to it excluded).
     * @return rows in the detail after it (an estimate if the detail does not reach back to it).
     */
    public long rowsAfter(final long batchId)
    {
        long n = 0;
        for (int i = 0; i < rows.length; i++)
        {
            if (detailFirstBatchId + i > batchId)
            {
                n += rows[i];
            }
        }
        return n;
    }

    /**
     * A copy whose detail starts after {@code batchId} and holds at most {@code max}
     * batches, for reports to the driver (the totals are kept).
     *
     * @param batchId the batch id the driver has planned up to (0 for all).
     * @param max     the most batches of detail.
     * @return the trimmed view ({@code this} if nothing is trimmed).
     */
    public RingView detailAfter(final long batchId, final int max)
    {
        if (rows.length == 0)
        {
            return this;
        }
        final int from = (int)Math.max(0, Math.min(rows.length, batchId + 1 - detailFirstBatchId));
        final int to = Math.min(rows.length, from + max);
        if (from == 0 && to == rows.length)
        {
            return this;
        }
        // Keep the detail contiguous up to lastBatchId: if the cap cuts it, report the cut
        // as the last batch (the rest comes in the next report).
        final long last = to > from ? detailFirstBatchId + to - 1 : lastBatchId;
        return new RingView(host, path, partition, instanceId, firstBatchId, last, unackedRows, unackedBytes,
            oldestProducedUnixNs, detailFirstBatchId + from,
            to > from ? Arrays.copyOfRange(rows, from, to) : NO_INTS,
            to > from ? Arrays.copyOfRange(bytes, from, to) : NO_LONGS,
            to > from ? Arrays.copyOfRange(positions, from, to) : NO_LONGS);
    }

    @Override
    public String toString()
    {
        return "RingView{host=" + host + ", path=" + path + ", partition=" + partition + ", instance=" +
            RingRegistry.hex(instanceId) + ", batches=" + firstBatchId + ".." + lastBatchId + ", rows=" + unackedRows + '}';
    }
}
