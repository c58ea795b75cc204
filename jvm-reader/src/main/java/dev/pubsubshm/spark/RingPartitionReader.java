package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.List;
import java.util.function.LongConsumer;

import org.apache.arrow.vector.FieldVector;
import org.apache.spark.SparkEnv;
import org.apache.spark.sql.connector.metric.CustomTaskMetric;
import org.apache.spark.sql.connector.read.PartitionReader;
import org.apache.spark.sql.vectorized.ArrowColumnVector;
import org.apache.spark.sql.vectorized.ColumnVector;
import org.apache.spark.sql.vectorized.ColumnarBatch;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.pubsubshm.arrow.RingBatchLoader;
import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingScanner;
import dev.pubsubshm.ring.RingDescriptor;

/**
 * Reads the planned batches of a {@link RingInputPartition} in place: for each slice, finds
 * batch {@code from + 1} (at the planner's position hint, else by walking record headers from
 * the head), then loads each ARROW record zero-copy ({@link RingBatchLoader}) and returns it
 * as a {@link ColumnarBatch} of {@link ArrowColumnVector}s over the shared memory. No row is
 * converted or copied here.
 *
 * <p><b>Lifetime.</b> A batch returned by {@link #get()} is valid until the next
 * {@link #next()} or {@link #close()}, which release its Arrow buffers. The records stay in
 * the ring after that (they are released at commit); the slice's start position is pinned in
 * the {@link RingRegistry} while the slice is read, so that a commit in this JVM cannot
 * let pullerd overwrite them under a task that outlived its micro-batch. The column vectors
 * are created once per slice: the loader reuses its vectors for every record.
 *
 * <p><b>Failures.</b> A slice whose ring is not on this host, was recreated (another
 * {@code ring_instance_id}) or no longer holds the planned batch fails the task with a
 * message naming the ring, the instance ids, the batches and the host (Spark retries the
 * task, on another host if the data is elsewhere), unless {@code failOnDataLoss} is off, in
 * which case the slice is skipped with a warning.
 *
 * <p><b>Another host.</b> A task that runs on another host than the one its slice was planned
 * on never skips that slice on its own: the same path on this host is another ring (or none).
 * It asks the driver (through {@link PubSubShmPlugin}) whether the planned host left the
 * cluster. If it did, the driver abandons that ring incarnation (never commits it, so nothing
 * of it is acknowledged unread) and the slice is skipped whatever {@code failOnDataLoss} says:
 * pullerd on that host never acked those messages, so Pub/Sub redelivers them to the other
 * hosts. Otherwise the task fails and Spark retries it, preferably on the planned host.
 */
final class RingPartitionReader implements PartitionReader<ColumnarBatch>
{
    private static final Logger LOG = LoggerFactory.getLogger(RingPartitionReader.class);
    /** Records are released at commit, not when Spark is done with them. */
    private static final LongConsumer NOT_RELEASED_HERE = position -> { };

    private final RingInputPartition partition;
    private final boolean validate;
    private final boolean failOnDataLoss;
    private int sliceIndex = -1;
    private SliceReader current;
    private ColumnarBatch batch;
    private long recordsRead;
    private long bytesRead;
    private boolean closed;

    RingPartitionReader(final RingInputPartition partition, final boolean validate, final boolean failOnDataLoss)
    {
        this.partition = partition;
        this.validate = validate;
        this.failOnDataLoss = failOnDataLoss;
    }

    @Override
    public boolean next()
    {
        batch = null;
        final List<RingInputPartition.Slice> slices = partition.slices();
        while (true)
        {
            if (current == null)
            {
                if (++sliceIndex >= slices.size())
                {
                    return false;
                }
                current = SliceReader.open(slices.get(sliceIndex), partition.host(), validate, failOnDataLoss);
                if (current == null)
                {
                    continue; // skipped (failOnDataLoss=false)
                }
            }
            if (current.next())
            {
                batch = current.batch;
                recordsRead += current.lastRows;
                bytesRead += current.lastBytes;
                return true;
            }
            current.close();
            current = null;
        }
    }

    @Override
    public ColumnarBatch get()
    {
        if (batch == null)
        {
            throw new IllegalStateException("get() without a successful next() on " + partition);
        }
        return batch;
    }

    @Override
    public CustomTaskMetric[] currentMetricsValues()
    {
        return new CustomTaskMetric[] {
            new SourceMetrics.Value(SourceMetrics.RECORDS_READ, recordsRead),
            new SourceMetrics.Value(SourceMetrics.BYTES_READ, bytesRead),
        };
    }

    @Override
    public void close()
    {
        if (!closed)
        {
            closed = true;
            batch = null;
            if (current != null)
            {
                current.close();
                current = null;
            }
        }
    }

    /** The name Spark knows this host by (tasks are placed by it), {@code null} outside Spark. */
    private static String knownLocalHost()
    {
        try
        {
            return SparkEnv.get().blockManager().blockManagerId().host();
        }
        catch (final RuntimeException ex)
        {
            return null;
        }
    }

    /** Reading one slice: the ring handle, its pin, the loader and the column vectors. */
    private static final class SliceReader implements AutoCloseable
    {
        private final RingInputPartition.Slice slice;
        private final RingRegistry.Handle handle;
        private final DataRingScanner scanner;
        private final DataRecord record = new DataRecord();
        private RingBatchLoader loader;
        private ColumnarBatch batch;
        private long pin = -1;
        private boolean pending;
        private long nextBatch;
        private int lastRows;
        private long lastBytes;

        private SliceReader(final RingInputPartition.Slice slice, final RingRegistry.Handle handle)
        {
            this.slice = slice;
            this.handle = handle;
            this.scanner = new DataRingScanner(handle.ring());
            this.nextBatch = slice.fromExclusive() + 1;
        }

        /**
         * Opens a slice: acquires its ring incarnation, finds and pins its first batch.
         *
         * @return the reader, or {@code null} if the slice is skipped (failOnDataLoss=false).
         */
        static SliceReader open(final RingInputPartition.Slice slice, final String plannedHost, final boolean validate,
            final boolean failOnDataLoss)
        {
            final RingRegistry.Handle handle;
            try
            {
                handle = RingRegistry.get().acquire(Path.of(slice.ringPath()), slice.instanceId());
            }
            catch (final RingUnavailableException ex)
            {
                final String known = knownLocalHost();
                final String here = known == null ? "this host" : known;
                final String what = "pubsub-shm: cannot read " + slice + " on " + here + " (planned on " +
                    plannedHost + "): " + ex.getMessage();
                if (known != null && !plannedHost.isEmpty() && !plannedHost.equals(known))
                {
                    final String dir = String.valueOf(Path.of(slice.ringPath()).getParent());
                    final Boolean gone = PubSubShmPlugin.skipBecauseHostGone(plannedHost, dir, slice.instanceId());
                    if (Boolean.TRUE.equals(gone))
                    {
                        LOG.warn("{}; skipped: host {} left the cluster, and pullerd there never acknowledged these " +
                            "messages, so Pub/Sub redelivers them to the remaining hosts", what, plannedHost);
                        return null;
                    }
                    // Never skip a ring of a host that is there: the same path here is another ring.
                    throw new IllegalStateException(what + ". This task runs on " + here + ", not on " + plannedHost +
                        ", which " + (gone == null ? "may still be in the cluster (no answer from the driver plugin)" :
                        "is still in the cluster") + ": Spark retries the task, preferably there", ex);
                }
                if (ex.reason() == RingUnavailableException.Reason.MISSING || failOnDataLoss)
                {
                    // A missing ring may be a task on the wrong host: fail it so that Spark retries it.
                    throw new IllegalStateException(what + (ex.reason() == RingUnavailableException.Reason.MISSING ?
                        ". If this task runs on another host than the ring's, Spark retries it there" :
                        ". Set " + SourceOptions.FAIL_ON_DATA_LOSS + "=false to skip such batches"), ex);
                }
                LOG.warn("{}; skipped ({}=false)", what, SourceOptions.FAIL_ON_DATA_LOSS);
                return null;
            }
            final SliceReader r = new SliceReader(slice, handle);
            try
            {
                if (!r.seekStart(failOnDataLoss))
                {
                    r.close();
                    return null;
                }
                r.loader = new RingBatchLoader(handle.ring(), RingRegistry.get().allocator(), validate);
                MessageSchema.check(r.loader.schema(), handle.path());
                final List<FieldVector> vectors = r.loader.root().getFieldVectors();
                final ColumnVector[] columns = new ColumnVector[vectors.size()];
                for (int i = 0; i < columns.length; i++)
                {
                    columns[i] = new ArrowColumnVector(vectors.get(i));
                }
                r.batch = new ColumnarBatch(columns);
                return r;
            }
            catch (final RuntimeException ex)
            {
                r.close();
                throw ex;
            }
        }

        /**
         * Positions the scanner on batch {@code from + 1} and pins it: at the hint if it is
         * there, else by walking from the head.
         *
         * @return {@code false} if the batch is gone and the slice is to be skipped.
         */
        private boolean seekStart(final boolean failOnDataLoss)
        {
            final long want = slice.fromExclusive() + 1;
            final long hint = slice.positionHint();
            if (hint >= 0 && handle.pin(hint))
            {
                pin = hint;
                scanner.seek(hint);
                if (scanner.next(record) == DataRingScanner.Status.RECORD && record.batchId() == want)
                {
                    pending = true;
                    return true;
                }
                handle.unpin(hint);
                pin = -1;
            }
            long head;
            do
            {
                head = handle.ring().headPosition();
            }
            while (!handle.pin(head));
            pin = head;
            scanner.seek(head);
            long first = -1;
            long last = -1;
            while (true)
            {
                final DataRingScanner.Status status = scanner.next(record);
                if (status != DataRingScanner.Status.RECORD)
                {
                    throw new IllegalStateException("pubsub-shm: " + slice + ": batch " + want + " is not in the ring " +
                        "(it holds " + (first < 0 ? "no complete batch" : "batches " + first + ".." + last) +
                        ", the scan ended with " + status + "), although it was planned complete");
                }
                if (first < 0)
                {
                    first = record.batchId();
                }
                last = record.batchId();
                if (record.batchId() == want)
                {
                    // Move the pin up to the first record this slice reads.
                    if (record.position() != pin)
                    {
                        handle.pin(record.position());
                        handle.unpin(pin);
                        pin = record.position();
                    }
                    pending = true;
                    return true;
                }
                if (record.batchId() > want)
                {
                    final String what = "pubsub-shm: " + slice + ": batches " + want + ".." + (record.batchId() - 1) +
                        " are no longer in the ring (it starts at batch " + record.batchId() + "): they were released " +
                        "by a commit after they were planned (another query on the same ring set?)";
                    if (failOnDataLoss)
                    {
                        throw new IllegalStateException(what + ". Set " + SourceOptions.FAIL_ON_DATA_LOSS +
                            "=false to skip them");
                    }
                    LOG.warn("{}; skipped ({}=false)", what, SourceOptions.FAIL_ON_DATA_LOSS);
                    return false;
                }
            }
        }

        /** Loads the next ARROW record with rows into the batch; false at the end of the slice. */
        boolean next()
        {
            loader.clear(); // Spark is done with the previous batch
            while (nextBatch <= slice.toInclusive())
            {
                if (pending)
                {
                    pending = false;
                }
                else
                {
                    final DataRingScanner.Status status = scanner.next(record);
                    if (status != DataRingScanner.Status.RECORD)
                    {
                        throw new IllegalStateException("pubsub-shm: " + slice + ": batch " + nextBatch + " is not " +
                            "readable (" + status + ") although it was planned complete");
                    }
                }
                if (record.batchId() != nextBatch)
                {
                    throw new IllegalStateException("pubsub-shm: " + slice + ": expected batch " + nextBatch +
                        ", the ring has batch " + record.batchId() + " at position " + record.position());
                }
                nextBatch++;
                if (record.type() != RingDescriptor.TYPE_ARROW || record.rowCount() == 0)
                {
                    continue; // RAW records carry no messages
                }
                loader.load(record, NOT_RELEASED_HERE);
                lastRows = record.rowCount();
                lastBytes = record.bodyLength();
                batch.setNumRows(lastRows);
                return true;
            }
            return false;
        }

        @Override
        public void close()
        {
            try
            {
                if (loader != null)
                {
                    loader.close();
                }
            }
            finally
            {
                scanner.close();
                if (pin >= 0)
                {
                    handle.unpin(pin);
                    pin = -1;
                    RingCommitter.advanceHead(handle); // a commit held back by this pin takes effect
                }
                handle.close();
            }
        }
    }
}
