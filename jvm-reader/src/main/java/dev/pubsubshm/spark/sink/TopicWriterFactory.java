package dev.pubsubshm.spark.sink;

import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.write.DataWriter;
import org.apache.spark.sql.connector.write.DataWriterFactory;
import org.apache.spark.sql.connector.write.streaming.StreamingDataWriterFactory;

/**
 * Serialized to the executors: creates one {@link TopicDataWriter} per task, each with its own
 * writer ring pair in the pullerd of the task's host.
 *
 * @param options      the sink options.
 * @param columns      the resolved input columns.
 * @param dataIsString whether {@code data} is a string column.
 * @param queryId      Spark's query id (diagnostics).
 */
record TopicWriterFactory(SinkOptions options, InputColumns columns, boolean dataIsString, String queryId)
    implements DataWriterFactory, StreamingDataWriterFactory
{
    private static final long serialVersionUID = 1L;

    @Override
    public DataWriter<InternalRow> createWriter(final int partitionId, final long taskId)
    {
        return new TopicDataWriter(options, columns, dataIsString, queryId, partitionId, taskId, -1);
    }

    @Override
    public DataWriter<InternalRow> createWriter(final int partitionId, final long taskId, final long epochId)
    {
        return new TopicDataWriter(options, columns, dataIsString, queryId, partitionId, taskId, epochId);
    }
}
