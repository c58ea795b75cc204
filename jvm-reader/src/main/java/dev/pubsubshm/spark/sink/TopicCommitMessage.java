package dev.pubsubshm.spark.sink;

import org.apache.spark.sql.connector.write.WriterCommitMessage;

/**
 * What one task's writer published: every row it wrote was accepted by Pub/Sub before the
 * task committed. The driver only logs the totals (Pub/Sub has no transaction to commit).
 *
 * @param partitionId    the task's partition.
 * @param taskId         the task attempt.
 * @param epochId        the micro-batch, -1 for a batch write.
 * @param rows           rows written and published.
 * @param batches        OUTBOUND batches.
 * @param messageBytes   message bytes (data, attributes, ordering keys).
 * @param publishedBytes encoded bytes of the Publish requests.
 * @param maxAttempts    the most Publish attempts a batch needed (1: no retry).
 * @param waitMs         time the task waited for ring space and for Pub/Sub at commit.
 */
public record TopicCommitMessage(int partitionId, long taskId, long epochId, long rows, long batches, long messageBytes,
    long publishedBytes, long maxAttempts, long waitMs) implements WriterCommitMessage
{
}
