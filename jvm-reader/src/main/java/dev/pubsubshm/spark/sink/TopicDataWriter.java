package dev.pubsubshm.spark.sink;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.locks.LockSupport;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import org.apache.spark.sql.catalyst.InternalRow;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;
import org.apache.spark.sql.connector.write.DataWriter;
import org.apache.spark.sql.connector.write.WriterCommitMessage;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.pubsubshm.ring.PeerState;
import dev.pubsubshm.ring.RingDescriptor;
import dev.pubsubshm.ring.RingFile;
import dev.pubsubshm.spark.PullerdControl;

/**
 * One Spark task's writer: asks pullerd for a writer ring pair ({@code attach_topic}), copies
 * every row into OUTBOUND batches ({@link OutboundBatchBuilder}) and returns at once;
 * pullerd publishes asynchronously and answers each batch in the RESULTS ring.
 * {@link #commit()} returns only when Pub/Sub accepted every row the task wrote; a refused or
 * failed publish fails the task (at the next {@code write} or at {@code commit}) with pullerd's
 * error. {@link #abort()} and {@link #close()} detach at once; pullerd then drops what it has
 * not sent and removes the rings.
 */
final class TopicDataWriter implements DataWriter<InternalRow>, OutboundBatchBuilder.SpaceWaiter
{
    private static final Logger LOG = LoggerFactory.getLogger(TopicDataWriter.class);
    private static final ObjectMapper JSON = new ObjectMapper();
    private static final long LIVENESS_CHECK_NS = TimeUnit.MILLISECONDS.toNanos(100);

    private final SinkOptions options;
    private final String label;
    private final RingFile outRing;
    private final RingFile resRing;
    private final OutboundRing outbound;
    private final PublishResults results;
    private final OutboundBatchBuilder builder;
    private final int partitionId;
    private final long taskId;
    private final long epochId;
    private long waitNs;
    private long lastLivenessNs;
    private boolean closed;

    /**
     * Attaches a writer ring pair for the task.
     *
     * @param options      the sink options.
     * @param columns      the resolved input columns.
     * @param dataIsString whether {@code data} is a string column.
     * @param queryId      Spark's query id (diagnostics).
     * @param partitionId  the task's partition.
     * @param taskId       the task attempt id.
     * @param epochId      the micro-batch (-1 for a batch write).
     * @throws IllegalStateException naming what to fix if pullerd cannot be reached or refuses.
     */
    TopicDataWriter(final SinkOptions options, final InputColumns columns, final boolean dataIsString, final String queryId,
        final int partitionId, final long taskId, final long epochId)
    {
        this.options = options;
        this.partitionId = partitionId;
        this.taskId = taskId;
        this.epochId = epochId;
        this.label = "spark query=" + queryId + " partition=" + partitionId + " task=" + taskId +
            (epochId >= 0 ? " epoch=" + epochId : "");
        final JsonNode writer = attach(options, label);
        final Path outPath = Path.of(writer.path("outbound_ring").path("file").asText());
        final Path resPath = Path.of(writer.path("results_ring").path("file").asText());
        RingFile out = null;
        RingFile res = null;
        PublishResults pr = null;
        try
        {
            out = RingFile.open(outPath, RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_OUTBOUND));
            res = RingFile.open(resPath, RingFile.OpenOptions.defaults().kind(RingDescriptor.KIND_DATA));
            this.outbound = new OutboundRing(out);
            pr = new PublishResults(res, out.instanceId(), options.topicName());
            this.builder = new OutboundBatchBuilder(outbound, columns, dataIsString, options, this);
        }
        catch (final RuntimeException ex)
        {
            if (out != null)
            {
                if (out.peerPid(RingFile.Side.PRODUCER) != 0)
                {
                    out.markClosed(RingFile.Side.PRODUCER);
                }
                out.close();
            }
            if (pr != null)
            {
                pr.close();
            }
            if (res != null)
            {
                res.close();
            }
            throw ex;
        }
        this.outRing = out;
        this.resRing = res;
        this.results = pr;
        SinkHeartbeats.register(this);
        LOG.debug("pubsub-shm sink: {} writes to {} through {}", label, options.topicName(), outPath);
    }

    private static JsonNode attach(final SinkOptions options, final String label)
    {
        final Path socket = options.controlSocket();
        if (!Files.exists(socket))
        {
            throw new IllegalStateException("pubsub-shm sink: no pullerd control socket \"" + socket + "\" on this host. " +
                "Start pullerd here (e.g. `PUBSUB_SHM_DIR=" + options.ringRoot() + " pullerd`), or set the option " +
                SinkOptions.RING_ROOT + " to the directory your pullerd uses (its -shm-dir)");
        }
        final ObjectNode req = JSON.createObjectNode();
        req.put("op", "attach_topic");
        req.put("project", options.projectId());
        req.put("topic", options.topicId());
        req.put("label", label.length() > 256 ? label.substring(0, 256) : label);
        if (options.ringCapacity() > 0)
        {
            req.put("ring_capacity", options.ringCapacity());
        }
        if (options.publishLingerMs() > 0)
        {
            req.put("linger_ms", options.publishLingerMs());
        }
        if (options.publishMaxBytes() > 0)
        {
            req.put("max_request_bytes", options.publishMaxBytes());
        }
        final JsonNode answer;
        try
        {
            answer = PullerdControl.call(socket, JSON.writeValueAsString(req), options.pullerdTimeoutMs());
        }
        catch (final IOException ex)
        {
            throw new IllegalStateException("pubsub-shm sink: pullerd does not answer on \"" + socket + "\": " +
                ex.getMessage() + ". Start pullerd on this host (a stale socket is left by a pullerd that was killed), " +
                "or raise " + SinkOptions.PULLERD_TIMEOUT_MS + "=" + options.pullerdTimeoutMs(), ex);
        }
        if (!answer.path("ok").asBoolean(false))
        {
            throw new IllegalStateException("pubsub-shm sink: pullerd on \"" + socket + "\" refused to attach a writer for " +
                options.topicName() + ": " + answer.path("error").asText(answer.toString()) +
                (answer.path("error").asText().contains("unknown op") ? " (this pullerd predates the sink: upgrade it)" : ""));
        }
        return answer.path("writer");
    }

    @Override
    public void write(final InternalRow row) throws IOException
    {
        final long before = builder.batches();
        try
        {
            builder.append(row);
        }
        catch (final PublishFailedRuntime ex)
        {
            throw (IOException)ex.getCause();
        }
        if (builder.batches() != before)
        {
            results.poll();
            checkFailure();
        }
    }

    @Override
    public WriterCommitMessage commit() throws IOException
    {
        builder.flush();
        final long batches = builder.batches();
        final long start = System.nanoTime();
        while (true)
        {
            results.poll();
            checkFailure();
            if (results.answered() >= batches)
            {
                break;
            }
            checkDeadlineAndPeer(start, -1);
            LockSupport.parkNanos(50_000);
        }
        waitNs += System.nanoTime() - start;
        final TopicCommitMessage msg = new TopicCommitMessage(partitionId, taskId, epochId, builder.totalRows(), batches,
            builder.totalBytes(), results.publishedBytes(), results.maxAttempts(), TimeUnit.NANOSECONDS.toMillis(waitNs));
        detach();
        LOG.debug("pubsub-shm sink: {} committed: {}", label, msg);
        return msg;
    }

    /** Throws the first publish failure pullerd reported. */
    private void checkFailure() throws PublishException
    {
        final String failure = results.failure();
        if (failure != null)
        {
            throw new PublishException("pubsub-shm sink: " + failure + " [" + label + "; rows written " + builder.totalRows() +
                ", accepted by Pub/Sub " + results.publishedRows() + "]");
        }
    }

    /** SpaceWaiter: the OUTBOUND ring is full; pullerd releases batches as Pub/Sub accepts them. */
    @Override
    public void await(final long needed, final long startNs)
    {
        final long now = System.nanoTime();
        try
        {
            results.poll();
            checkFailure();
            checkDeadlineAndPeer(startNs, needed);
        }
        catch (final IOException ex)
        {
            throw new PublishFailedRuntime(ex);
        }
        LockSupport.parkNanos(20_000);
        waitNs += System.nanoTime() - now;
    }

    /** What the writer waits for, for messages (built only when it fails): ring space, or -1 for the commit. */
    private String waitingFor(final long needed)
    {
        if (needed < 0)
        {
            return "waiting for Pub/Sub to accept " + (builder.batches() - results.answered()) + " of " + builder.batches() +
                " batches at commit";
        }
        return "waiting for " + needed + " bytes of OUTBOUND ring space (" + outbound.used() + " of " + outRing.capacity() +
            " held by batches being published)";
    }

    /**
     * Fails the wait after publishTimeoutMs, or when pullerd is gone.
     *
     * @param start  when the wait began.
     * @param needed ring bytes waited for, or -1 at commit.
     */
    private void checkDeadlineAndPeer(final long start, final long needed) throws PublishException
    {
        final long now = System.nanoTime();
        if (now - start > TimeUnit.MILLISECONDS.toNanos(options.publishTimeoutMs()))
        {
            throw new PublishException("pubsub-shm sink: timed out after " + SinkOptions.PUBLISH_TIMEOUT_MS + "=" +
                options.publishTimeoutMs() + " " + waitingFor(needed) + " [" + label + "]");
        }
        if (now - lastLivenessNs < LIVENESS_CHECK_NS)
        {
            return;
        }
        lastLivenessNs = now;
        final PeerState consumer = outRing.peerState(RingFile.Side.CONSUMER, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS, now);
        final PeerState producer = resRing.peerState(RingFile.Side.PRODUCER, RingFile.DEFAULT_LIVENESS_TIMEOUT_NS, now);
        if (consumer == PeerState.DEAD || producer == PeerState.DEAD || producer == PeerState.CLOSED ||
            consumer == PeerState.CLOSED)
        {
            results.poll();
            checkFailure();
            throw new PublishException("pubsub-shm sink: pullerd stopped serving this writer while " + waitingFor(needed) + " (" +
                (producer == PeerState.CLOSED || consumer == PeerState.CLOSED ? "it closed the writer: shut down" : "it died") +
                "; " + outRing.describePeer(RingFile.Side.CONSUMER, now) + "); rows written " + builder.totalRows() +
                ", accepted by Pub/Sub " + results.publishedRows() + " [" + label + "]");
        }
    }

    @Override
    public void abort()
    {
        builder.abandon();
        detach();
        LOG.debug("pubsub-shm sink: {} aborted", label);
    }

    @Override
    public void close()
    {
        if (!closed)
        {
            builder.abandon();
            detach();
        }
    }

    /** Marks the writer closed in the ring (pullerd drops what is unsent and removes the pair) and unmaps. */
    private void detach()
    {
        if (closed)
        {
            return;
        }
        closed = true;
        SinkHeartbeats.unregister(this);
        outbound.markClosed();
        results.close();
        outRing.close();
        resRing.close();
    }

    /** Stamps both heartbeats (the heartbeat timer's thread). */
    void heartbeat()
    {
        if (outRing.tryRetain())
        {
            try
            {
                outbound.heartbeat();
            }
            finally
            {
                outRing.release();
            }
        }
        results.heartbeat();
    }

    @Override
    public CustomTaskMetric[] currentMetricsValues()
    {
        return SinkMetrics.taskValues(results.publishedRows(), results.publishedBytes(), TimeUnit.NANOSECONDS.toMillis(waitNs));
    }

    /** The failure of a publish, thrown from the row path (which cannot throw IOException). */
    static final class PublishFailedRuntime extends RuntimeException
    {
        private static final long serialVersionUID = 1L;

        PublishFailedRuntime(final IOException cause)
        {
            super(cause.getMessage(), cause);
        }
    }
}
