package dev.pubsubshm.spark.sink;

import org.apache.spark.sql.connector.metric.CustomMetric;
import org.apache.spark.sql.connector.write.BatchWrite;
import org.apache.spark.sql.connector.write.DataWriterFactory;
import org.apache.spark.sql.connector.write.PhysicalWriteInfo;
import org.apache.spark.sql.connector.write.Write;
import org.apache.spark.sql.connector.write.WriterCommitMessage;
import org.apache.spark.sql.connector.write.streaming.StreamingDataWriterFactory;
import org.apache.spark.sql.connector.write.streaming.StreamingWrite;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * A write to a topic, batch or streaming. Pub/Sub has no transaction: every task publishes its
 * rows before its own commit returns, so the driver-side commit only reports, and a failed or
 * retried task may leave duplicates (at-least-once, as with any Pub/Sub publisher).
 */
final class TopicWrite implements Write, BatchWrite, StreamingWrite
{
    private static final Logger LOG = LoggerFactory.getLogger(TopicWrite.class);

    private final SinkOptions options;
    private final InputColumns columns;
    private final boolean dataIsString;
    private final String queryId;

    TopicWrite(final SinkOptions options, final InputColumns columns, final boolean dataIsString, final String queryId)
    {
        this.options = options;
        this.columns = columns;
        this.dataIsString = dataIsString;
        this.queryId = queryId;
    }

    @Override
    public String description()
    {
        return "pubsub-shm[" + options.topicName() + "]";
    }

    @Override
    public BatchWrite toBatch()
    {
        return this;
    }

    @Override
    public StreamingWrite toStreaming()
    {
        return this;
    }

    @Override
    public CustomMetric[] supportedCustomMetrics()
    {
        return SinkMetrics.supported();
    }

    @Override
    public DataWriterFactory createBatchWriterFactory(final PhysicalWriteInfo info)
    {
        return new TopicWriterFactory(options, columns, dataIsString, queryId);
    }

    @Override
    public StreamingDataWriterFactory createStreamingWriterFactory(final PhysicalWriteInfo info)
    {
        return new TopicWriterFactory(options, columns, dataIsString, queryId);
    }

    @Override
    public boolean useCommitCoordinator()
    {
        return false; // the rows are published before a task commits: nothing to arbitrate
    }

    @Override
    public void commit(final WriterCommitMessage[] messages)
    {
        report("batch write", messages);
    }

    @Override
    public void abort(final WriterCommitMessage[] messages)
    {
        LOG.warn("pubsub-shm sink: batch write to {} aborted; rows of the tasks that committed were published", options.topicName());
    }

    @Override
    public void commit(final long epochId, final WriterCommitMessage[] messages)
    {
        report("epoch " + epochId, messages);
    }

    @Override
    public void abort(final long epochId, final WriterCommitMessage[] messages)
    {
        LOG.warn("pubsub-shm sink: epoch {} to {} aborted; rows of the tasks that committed were published (a retry " +
            "publishes them again)", epochId, options.topicName());
    }

    private void report(final String what, final WriterCommitMessage[] messages)
    {
        long rows = 0;
        long bytes = 0;
        long retried = 0;
        for (final WriterCommitMessage m : messages)
        {
            if (m instanceof TopicCommitMessage t)
            {
                rows += t.rows();
                bytes += t.messageBytes();
                retried += t.maxAttempts() > 1 ? 1 : 0;
            }
        }
        LOG.info("pubsub-shm sink: {} published {} rows ({} message bytes) to {} from {} tasks{}", what, rows, bytes,
            options.topicName(), messages.length, retried > 0 ? " (" + retried + " tasks needed Publish retries)" : "");
    }
}
