package dev.pubsubshm.spark;

import java.io.Serializable;
import java.util.Arrays;
import java.util.List;

import org.apache.spark.sql.connector.read.InputPartition;

/**
 * One Spark partition of a micro-batch: batches of one or more rings on one host, read in
 * place by a task on that host. Usually one ring; several when the rings with new data
 * outnumber {@code numPartitions}.
 *
 * @param host   the host that holds the rings (the preferred location).
 * @param slices the ring ranges, read in order.
 */
public record RingInputPartition(String host, List<Slice> slices) implements InputPartition
{
    private static final long serialVersionUID = 1L;

    /**
     * The batches {@code fromExclusive + 1 .. toInclusive} of one ring incarnation.
     *
     * @param ringPath      the DATA ring file on {@code host}.
     * @param partition     its virtual partition.
     * @param instanceId    its {@code ring_instance_id}: the task fails if the file is another incarnation.
     * @param fromExclusive the batch before the first to read.
     * @param toInclusive   the last batch to read.
     * @param positionHint  the stream position of batch {@code fromExclusive + 1} when planned, -1 if
     *                      unknown (the reader then walks from the head).
     */
    public record Slice(String ringPath, int partition, long instanceId, long fromExclusive, long toInclusive,
                        long positionHint) implements Serializable
    {
        private static final long serialVersionUID = 1L;

        @Override
        public String toString()
        {
            return ringPath + "@" + RingRegistry.hex(instanceId) + " batches " + (fromExclusive + 1) + ".." + toInclusive;
        }
    }

    /**
     * @param host   the host that holds the rings.
     * @param slices the ring ranges (copied).
     */
    public RingInputPartition
    {
        slices = List.copyOf(slices);
    }

    @Override
    public String[] preferredLocations()
    {
        return host.isEmpty() ? new String[0] : new String[] {host};
    }

    @Override
    public String toString()
    {
        return "RingInputPartition{host=" + host + ", slices=" + Arrays.toString(slices.toArray()) + '}';
    }
}
