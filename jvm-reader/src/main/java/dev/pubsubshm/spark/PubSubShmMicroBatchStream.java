package dev.pubsubshm.spark;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.TreeMap;
import java.util.UUID;

import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FSDataInputStream;
import org.apache.hadoop.fs.FSDataOutputStream;
import org.apache.hadoop.fs.FileAlreadyExistsException;
import org.apache.hadoop.fs.FileSystem;
import org.apache.spark.sql.connector.read.InputPartition;
import org.apache.spark.sql.connector.read.PartitionReaderFactory;
import org.apache.spark.sql.connector.read.streaming.CompositeReadLimit;
import org.apache.spark.sql.connector.read.streaming.MicroBatchStream;
import org.apache.spark.sql.connector.read.streaming.Offset;
import org.apache.spark.sql.connector.read.streaming.ReadAllAvailable;
import org.apache.spark.sql.connector.read.streaming.ReadLimit;
import org.apache.spark.sql.connector.read.streaming.ReadMaxBytes;
import org.apache.spark.sql.connector.read.streaming.ReadMaxRows;
import org.apache.spark.sql.connector.read.streaming.ReportsSourceMetrics;
import org.apache.spark.sql.connector.read.streaming.SupportsAdmissionControl;
import org.apache.spark.sql.connector.read.streaming.SupportsTriggerAvailableNow;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The micro-batch stream of {@code format("pubsub-shm")}, on the driver.
 *
 * <p><b>Offsets</b> are per ring incarnation batch ids ({@link RingOffset}). The initial
 * offset is just before the oldest batch each ring holds (its head), written once into the
 * checkpoint so that a restart before the first commit plans the same first micro-batch.
 * {@link #latestOffset(Offset, ReadLimit)} looks at the record headers of every ring
 * (locally through {@link RingSetScanner}, on other hosts through the plugin's reports) and
 * lets {@link BatchPlanner} pick the end under the read limits. The content of a micro-batch
 * is thereby fixed when it is planned: the rings keep every batch until it is committed.
 *
 * <p><b>Commit.</b> Batches are acknowledged only once Spark has committed the micro-batch
 * that read them (its entry is in the checkpoint's commit log). Spark says so in two ways:
 * {@link #commit(Offset)}, which it calls for micro-batch N only when it constructs N+1, and
 * the start offset it passes to {@code latestOffset}, which is the end of the last committed
 * micro-batch (so the last micro-batch of a run, or of an idle stream, is acknowledged at the
 * next trigger instead of never). Both feed {@link #commitUpTo}: the watermark goes to the
 * {@link CommitBoard} (executors of the plugin apply it on their hosts) and, for the rings on
 * this host, straight to {@link RingCommitter}. Unsupported: asynchronous progress tracking,
 * whose commit log lags the start offset.
 */
final class PubSubShmMicroBatchStream implements MicroBatchStream, SupportsAdmissionControl, SupportsTriggerAvailableNow,
    ReportsSourceMetrics
{
    /** Spark conf: whether the driver commits the rings on its own host (default true). */
    static final String DRIVER_COMMITS_CONF = "spark.pubsubshm.driverCommits";
    /** The file in the source's checkpoint directory that holds the initial offset. */
    static final String INITIAL_OFFSET_FILE = "pubsub-shm-initial-offset.json";

    private static final Logger LOG = LoggerFactory.getLogger(PubSubShmMicroBatchStream.class);

    private final SourceOptions options;
    private final Path setDir;
    private final String host;
    private final String checkpointLocation;
    private final Configuration hadoopConf;
    private final boolean driverCommits;
    private final boolean localRingsExpected;
    private final String id = UUID.randomUUID().toString().substring(0, 8);
    private final RingSetScanner local;
    private final CommitBoard board = CommitBoard.get();

    // Guarded by this.
    private RingOffset initial;
    private RingOffset availableNowTarget;
    private List<RingView> lastViews = List.of();
    private RingOffset lastAvailable = RingOffset.empty();
    private RingOffset committed = RingOffset.empty();
    private boolean stopped;
    private boolean setGone;

    /**
     * @param options            validated options.
     * @param setDir             the ring set directory (the same path on every host).
     * @param host               the name Spark knows this (driver) host by.
     * @param checkpointLocation the source's checkpoint directory.
     * @param hadoopConf         to reach the checkpoint's file system.
     * @param driverCommits      whether to commit the rings on this host directly.
     * @param localRingsExpected whether the ring set must be on this host (no plugin reports).
     */
    PubSubShmMicroBatchStream(
        final SourceOptions options,
        final Path setDir,
        final String host,
        final String checkpointLocation,
        final Configuration hadoopConf,
        final boolean driverCommits,
        final boolean localRingsExpected)
    {
        this.options = options;
        this.setDir = setDir.toAbsolutePath().normalize();
        this.host = host;
        this.checkpointLocation = checkpointLocation;
        this.hadoopConf = hadoopConf;
        this.driverCommits = driverCommits;
        this.localRingsExpected = localRingsExpected;
        this.local = new RingSetScanner(this.setDir, host);
        board.driverHost(host);
        board.register(id, this.setDir, options.projectId(), options.subscriptionId(),
            options.numPartitionsGiven() ? options.numPartitions() : 0, options.streamBudget());
    }

    // ---------------------------------------------------------------------------------
    // Offsets.
    // ---------------------------------------------------------------------------------

    @Override
    public synchronized Offset initialOffset()
    {
        if (initial == null)
        {
            initial = readOrWriteInitialOffset();
        }
        return initial;
    }

    private RingOffset readOrWriteInitialOffset()
    {
        final org.apache.hadoop.fs.Path file = new org.apache.hadoop.fs.Path(checkpointLocation, INITIAL_OFFSET_FILE);
        try
        {
            final FileSystem fs = file.getFileSystem(hadoopConf);
            if (fs.exists(file))
            {
                try (FSDataInputStream in = fs.open(file))
                {
                    return RingOffset.fromJson(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                }
            }
            final List<RingOffset.Entry> entries = new ArrayList<>();
            for (final RingView v : views())
            {
                if (v.firstBatchId() > 0)
                {
                    entries.add(new RingOffset.Entry(v.host(), v.partition(), v.instanceId(), v.firstBatchId() - 1,
                        RingOffset.NO_BASE));
                }
            }
            final RingOffset offset = new RingOffset(entries);
            try (FSDataOutputStream out = fs.create(file, false))
            {
                out.write(offset.json().getBytes(StandardCharsets.UTF_8));
            }
            catch (final FileAlreadyExistsException ex)
            {
                // A concurrent start of the same query wrote it first: use that one.
                try (FSDataInputStream in = fs.open(file))
                {
                    return RingOffset.fromJson(new String(in.readAllBytes(), StandardCharsets.UTF_8));
                }
            }
            LOG.info("pubsub-shm: initial offset of {} is {}", options.subscriptionName(), offset);
            return offset;
        }
        catch (final IOException ex)
        {
            throw new UncheckedIOException("pubsub-shm: cannot read or write the initial offset \"" + file + "\"", ex);
        }
    }

    @Override
    public Offset latestOffset()
    {
        throw new UnsupportedOperationException("pubsub-shm supports admission control: Spark calls " +
            "latestOffset(Offset, ReadLimit)");
    }

    @Override
    public ReadLimit getDefaultReadLimit()
    {
        final List<ReadLimit> limits = new ArrayList<>();
        if (options.maxRecordsPerTrigger() > 0)
        {
            limits.add(ReadLimit.maxRows(options.maxRecordsPerTrigger()));
        }
        if (options.maxBytesPerTrigger() > 0)
        {
            limits.add(ReadLimit.maxBytes(options.maxBytesPerTrigger()));
        }
        return switch (limits.size())
        {
            case 0 -> ReadLimit.allAvailable();
            case 1 -> limits.get(0);
            default -> ReadLimit.compositeLimit(limits.toArray(new ReadLimit[0]));
        };
    }

    @Override
    public synchronized Offset latestOffset(final Offset startOffset, final ReadLimit limit)
    {
        final RingOffset start = RingOffset.of(startOffset);
        // Spark passes the end of the last committed micro-batch: acknowledge it now.
        commitUpTo(start);
        final long[] max = new long[2];
        limits(limit, max);
        final List<RingView> views = views();
        final BatchPlanner.Plan plan = BatchPlanner.plan(start, views, max[0], max[1], availableNowTarget,
            options.failOnDataLoss());
        lastViews = views;
        lastAvailable = plan.available();
        if (plan.batches() > 0)
        {
            board.planned(setDir, plan.end());
            LOG.debug("pubsub-shm: planned {} ring batches, {} rows, {} bytes: {} -> {}", plan.batches(), plan.rows(),
                plan.bytes(), start, plan.end());
        }
        return plan.end();
    }

    private static void limits(final ReadLimit limit, final long[] max)
    {
        if (limit instanceof ReadMaxRows r)
        {
            max[0] = max[0] == 0 ? r.maxRows() : Math.min(max[0], r.maxRows());
        }
        else if (limit instanceof ReadMaxBytes b)
        {
            max[1] = max[1] == 0 ? b.maxBytes() : Math.min(max[1], b.maxBytes());
        }
        else if (limit instanceof CompositeReadLimit c)
        {
            for (final ReadLimit l : c.getReadLimits())
            {
                limits(l, max);
            }
        }
        else if (!(limit instanceof ReadAllAvailable))
        {
            throw new UnsupportedOperationException("pubsub-shm does not support the read limit " + limit +
                "; it supports maxRows, maxBytes and their composite");
        }
    }

    @Override
    public synchronized Offset reportLatestOffset()
    {
        return lastAvailable;
    }

    @Override
    public synchronized void prepareForTriggerAvailableNow()
    {
        final List<RingOffset.Entry> entries = new ArrayList<>();
        for (final RingView v : views())
        {
            if (v.lastBatchId() > 0)
            {
                entries.add(new RingOffset.Entry(v.host(), v.partition(), v.instanceId(), v.lastBatchId(), RingOffset.NO_BASE));
            }
        }
        availableNowTarget = new RingOffset(entries);
        LOG.info("pubsub-shm: Trigger.AvailableNow reads up to {}", availableNowTarget);
    }

    @Override
    public Offset deserializeOffset(final String json)
    {
        return RingOffset.fromJson(json);
    }

    /** Local rings, and, with the plugin, the rings executors reported on other hosts. */
    private List<RingView> views()
    {
        final List<RingView> views = new ArrayList<>(local.scan());
        if (localRingsExpected)
        {
            final boolean gone = views.isEmpty() && !RingSetScanner.isRingSet(setDir);
            if (gone && !setGone)
            {
                LOG.warn("pubsub-shm: the ring set \"{}\" is gone (pullerd stopped?); no new data until it is back", setDir);
            }
            else if (!gone && setGone)
            {
                LOG.info("pubsub-shm: the ring set \"{}\" is back", setDir);
            }
            setGone = gone;
        }
        if (board.pluginActive())
        {
            final Map<Long, Boolean> localIds = new HashMap<>();
            for (final RingView v : views)
            {
                localIds.put(v.instanceId(), Boolean.TRUE);
            }
            for (final RingView v : board.reportedViews(setDir))
            {
                if (!localIds.containsKey(v.instanceId()))
                {
                    views.add(v);
                }
            }
        }
        return views;
    }

    // ---------------------------------------------------------------------------------
    // Planning.
    // ---------------------------------------------------------------------------------

    @Override
    public synchronized InputPartition[] planInputPartitions(final Offset startOffset, final Offset endOffset)
    {
        final RingOffset start = RingOffset.of(startOffset);
        final RingOffset end = RingOffset.of(endOffset);
        final Map<Long, RingView> known = new HashMap<>();
        for (final RingView v : lastViews)
        {
            known.put(v.instanceId(), v);
        }
        final TreeMap<String, List<RingInputPartition.Slice>> byHost = new TreeMap<>();
        for (final RingOffset.Entry e : end.entries())
        {
            final RingOffset.Entry s = start.get(e.instanceId());
            final long from = s != null ? s.batch() : e.base();
            if (from == RingOffset.NO_BASE)
            {
                throw new IllegalStateException("pubsub-shm: ring " + e + " of end offset " + end + " is neither in the " +
                    "start offset " + start + " nor carries a base batch: the offsets are not from this source");
            }
            if (e.batch() <= from)
            {
                continue;
            }
            final RingView v = known.get(e.instanceId());
            final long hint = v != null && v.hasDetail(from + 1) ? v.position(from + 1) : -1;
            final String ringPath = setDir.resolve("data-" + e.partition() + ".ring").toString();
            byHost.computeIfAbsent(e.host(), h -> new ArrayList<>())
                .add(new RingInputPartition.Slice(ringPath, e.partition(), e.instanceId(), from, e.batch(), hint));
        }
        return group(byHost, options.numPartitions());
    }

    /**
     * At most {@code maxPartitions} partitions (but at least one per host with data): hosts
     * get partitions in proportion to their slices, slices are dealt round-robin.
     */
    static InputPartition[] group(final TreeMap<String, List<RingInputPartition.Slice>> byHost, final int maxPartitions)
    {
        int total = 0;
        for (final List<RingInputPartition.Slice> s : byHost.values())
        {
            total += s.size();
        }
        final List<InputPartition> out = new ArrayList<>();
        for (final Map.Entry<String, List<RingInputPartition.Slice>> e : byHost.entrySet())
        {
            final List<RingInputPartition.Slice> slices = e.getValue();
            final int n = total <= maxPartitions ? slices.size() :
                Math.max(1, (int)((long)slices.size() * maxPartitions / total));
            final List<List<RingInputPartition.Slice>> groups = new ArrayList<>();
            for (int i = 0; i < n; i++)
            {
                groups.add(new ArrayList<>());
            }
            for (int i = 0; i < slices.size(); i++)
            {
                groups.get(i % n).add(slices.get(i));
            }
            for (final List<RingInputPartition.Slice> g : groups)
            {
                out.add(new RingInputPartition(e.getKey(), g));
            }
        }
        return out.toArray(new InputPartition[0]);
    }

    @Override
    public PartitionReaderFactory createReaderFactory()
    {
        return new RingReaderFactory(options.validateBatches(), options.failOnDataLoss());
    }

    // ---------------------------------------------------------------------------------
    // Commit.
    // ---------------------------------------------------------------------------------

    @Override
    public synchronized void commit(final Offset end)
    {
        commitUpTo(RingOffset.of(end));
    }

    /**
     * Acknowledges every batch up to {@code offset}: Spark has committed it. Failures are
     * logged and retried at the next call (the batches stay leased by pullerd meanwhile).
     */
    private void commitUpTo(final RingOffset offset)
    {
        if (stopped || offset.entries().isEmpty())
        {
            return;
        }
        board.committed(setDir, offset);
        if (!driverCommits)
        {
            committed = offset;
            return;
        }
        for (final RingOffset.Entry e : offset.entries())
        {
            final RingOffset.Entry done = committed.get(e.instanceId());
            if (done != null && done.batch() >= e.batch())
            {
                continue;
            }
            final Path ring = setDir.resolve("data-" + e.partition() + ".ring");
            try
            {
                final long n = RingCommitter.commit(ring, e.instanceId(), e.batch());
                if (n > 0)
                {
                    LOG.debug("pubsub-shm: committed {} batches of {} up to batch {}", n, ring, e.batch());
                }
            }
            catch (final RuntimeException ex)
            {
                LOG.warn("pubsub-shm: committing {} up to batch {} failed; retrying at the next trigger", ring, e.batch(), ex);
                return; // keep `committed` as it was: the next call retries
            }
        }
        committed = offset;
    }

    // ---------------------------------------------------------------------------------
    // Metrics.
    // ---------------------------------------------------------------------------------

    /**
     * Source metrics, shown in {@code StreamingQueryProgress.sources[].metrics}:
     * <ul>
     * <li>{@code num_unacked_messages}, {@code num_unacked_bytes}: rows and Arrow bytes in the
     *     rings, i.e. received by pullerd, not yet committed by Spark (the backlog);</li>
     * <li>{@code num_unread_messages}: of those, rows after the latest planned offset;</li>
     * <li>{@code oldest_unacked_age_ms}: age of the oldest batch in the rings;</li>
     * <li>{@code num_rings}: DATA rings seen.</li>
     * </ul>
     */
    @Override
    public synchronized Map<String, String> metrics(final Optional<Offset> latestConsumedOffset)
    {
        long unackedRows = 0;
        long unackedBytes = 0;
        long unread = 0;
        long oldest = Long.MAX_VALUE;
        final RingOffset consumed = latestConsumedOffset.map(RingOffset::of).orElse(RingOffset.empty());
        for (final RingView v : lastViews)
        {
            unackedRows += v.unackedRows();
            unackedBytes += v.unackedBytes();
            final RingOffset.Entry e = consumed.get(v.instanceId());
            unread += v.rowsAfter(e != null ? e.batch() : v.firstBatchId() - 1);
            if (v.oldestProducedUnixNs() > 0)
            {
                oldest = Math.min(oldest, v.oldestProducedUnixNs());
            }
        }
        final Map<String, String> m = new LinkedHashMap<>();
        m.put("num_unacked_messages", Long.toString(unackedRows));
        m.put("num_unacked_bytes", Long.toString(unackedBytes));
        m.put("num_unread_messages", Long.toString(unread));
        m.put("oldest_unacked_age_ms", oldest == Long.MAX_VALUE ? "0" :
            Long.toString(Math.max(0, (System.currentTimeMillis() * 1_000_000L - oldest) / 1_000_000L)));
        m.put("num_rings", Integer.toString(lastViews.size()));
        return Collections.unmodifiableMap(m);
    }

    @Override
    public synchronized void stop()
    {
        if (!stopped)
        {
            stopped = true;
            local.close();
            board.unregister(id, setDir);
        }
    }

    @Override
    public String toString()
    {
        return "PubSubShm[" + options.subscriptionName() + " ringSet=" + setDir + "]";
    }
}
