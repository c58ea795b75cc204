package dev.pubsubshm.spark;

import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.vectorized.ColumnarBatch;

/**
 * Creates the tasks' readers. Stateless and serializable; columnar only: the rings hold
 * Arrow batches, and the source hands them to Spark as they are.
 *
 * @param validateBatches check every loaded vector's offsets before Spark reads it.
 * @param failOnDataLoss  fail (rather than skip) a slice whose ring is gone or recreated.
 */
record RingReaderFactory(boolean validateBatches, boolean failOnDataLoss) implements PartitionReaderFactory
{
    private static final long serialVersionUID = 1L;

    @Override
    public PartitionReader<InternalRow> createReader(final InputPartition partition)
    {
        throw new UnsupportedOperationException("pubsub-shm reads columnar batches only (supportColumnarReads is true " +
            "for every partition); Spark asked for a row reader of " + partition);
    }

    @Override
    public PartitionReader<ColumnarBatch> createColumnarReader(final InputPartition partition)
    {
        return new RingPartitionReader((RingInputPartition)partition, validateBatches, failOnDataLoss);
    }

    @Override
    public boolean supportColumnarReads(final InputPartition partition)
    {
        return true;
    }
}
