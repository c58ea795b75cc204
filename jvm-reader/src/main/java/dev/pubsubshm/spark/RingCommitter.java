package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import dev.pubsubshm.ring.CommitRingWriter;
import dev.pubsubshm.ring.DataRecord;
import dev.pubsubshm.ring.DataRingScanner;

/**
 * Turns "Spark committed every batch of ring R up to batch B" into what pullerd needs, on the
 * host that holds the ring: COMMIT records in the ring set's commit ring (ackd acknowledges
 * the messages) and RELEASED records with an advanced {@code head_position} (pullerd may
 * reuse the space).
 *
 * <p>For each record from the head up to batch B: claim its RELEASED bit by compare-and-swap
 * (whoever sets the bit, in this JVM or another, owns that batch's commit: each batch is
 * committed exactly once however many drivers and executors apply the same watermark); write
 * one COMMIT record per contiguous run of claimed batches; then move the head over the
 * released run, never past a position a local reader has pinned. Records below the head were
 * released, hence committed, before. If a commit record cannot be written (commit ring full
 * for the writer's timeout: ackd stalled), the claims are given back and the exception
 * propagates: the next commit call retries.
 */
public final class RingCommitter
{
    private static final Logger LOG = LoggerFactory.getLogger(RingCommitter.class);

    private RingCommitter()
    {
    }

    /**
     * Commits every batch up to {@code upTo} of one DATA ring incarnation.
     *
     * @param ringPath   the DATA ring file ({@code <set>/data-<p>.ring}); its commit ring is
     *                   {@code <set>/commit.ring}.
     * @param instanceId the ring's {@code ring_instance_id} the batch ids belong to.
     * @param upTo       the last batch id to commit (inclusive).
     * @return how many batches this call committed (0 if they were committed already, or the
     * ring is gone or was recreated: pullerd nacked those batches itself).
     * @throws dev.pubsubshm.ring.RingFormatException if the commit ring is full for too long
     *                                               or a ring is corrupt.
     */
    public static long commit(final Path ringPath, final long instanceId, final long upTo)
    {
        if (upTo < 1)
        {
            return 0;
        }
        final RingRegistry registry = RingRegistry.get();
        final RingRegistry.Handle data;
        try
        {
            data = registry.acquire(ringPath, instanceId);
        }
        catch (final RingUnavailableException ex)
        {
            LOG.debug("pubsub-shm: nothing to commit up to batch {} of {}: {}", upTo, ringPath, ex.getMessage());
            return 0;
        }
        try (data)
        {
            synchronized (data.lock())
            {
                if (upTo <= data.committedUpTo())
                {
                    return 0;
                }
                try (RingRegistry.Handle commitRing = registry.acquire(ringPath.resolveSibling("commit.ring"));
                     DataRingScanner scanner = new DataRingScanner(data.ring()))
                {
                    final long n = commitLocked(data, commitRing, scanner, upTo);
                    data.committedUpTo(upTo);
                    return n;
                }
            }
        }
    }

    private static long commitLocked(
        final RingRegistry.Handle data,
        final RingRegistry.Handle commitRing,
        final DataRingScanner scanner,
        final long upTo)
    {
        final DataRecord record = new DataRecord();
        final List<long[]> runs = new ArrayList<>(); // {first, last}
        final List<long[]> claimed = new ArrayList<>(); // {position, batchId}
        long runFirst = -1;
        long runLast = -1;
        scanner.seekToHead();
        int restarts = 0;
        scan:
        while (true)
        {
            switch (scanner.next(record))
            {
                case RECORD ->
                {
                    if (record.batchId() > upTo)
                    {
                        break scan;
                    }
                    if (scanner.tryMarkReleased(record))
                    {
                        claimed.add(new long[] {record.position(), record.batchId()});
                        if (runFirst >= 0 && record.batchId() == runLast + 1)
                        {
                            runLast = record.batchId();
                        }
                        else
                        {
                            if (runFirst >= 0)
                            {
                                runs.add(new long[] {runFirst, runLast});
                            }
                            runFirst = record.batchId();
                            runLast = runFirst;
                        }
                    }
                }
                case STALE ->
                {
                    // Another process moved the head (it committed these batches too).
                    if (++restarts > 1000)
                    {
                        throw new IllegalStateException("pubsub-shm: the head of \"" + data.path() + "\" keeps moving " +
                            "under the committer");
                    }
                    scanner.seekToHead();
                }
                case END, IN_PROGRESS ->
                {
                    break scan;
                }
            }
        }
        if (runFirst >= 0)
        {
            runs.add(new long[] {runFirst, runLast});
        }
        long committed = 0;
        if (!runs.isEmpty())
        {
            final int partition = data.ring().partition();
            int written = 0;
            try
            {
                synchronized (commitRing.lock())
                {
                    final CommitRingWriter writer = commitRing.commitWriter();
                    for (final long[] run : runs)
                    {
                        writer.commit(partition, data.instanceId(), run[0], run[1]);
                        written++;
                        committed += run[1] - run[0] + 1;
                    }
                }
            }
            catch (final RuntimeException ex)
            {
                // Give back the claims of the runs not written; they stay in the ring, uncommitted.
                for (final long[] claim : claimed)
                {
                    if (!inWrittenRun(claim[1], runs, written))
                    {
                        scanner.clearReleased(claim[0]);
                    }
                }
                throw ex;
            }
        }
        scanner.advanceHead(data.lowestPin());
        return committed;
    }

    private static boolean inWrittenRun(final long batchId, final List<long[]> runs, final int written)
    {
        for (int i = 0; i < written; i++)
        {
            if (batchId >= runs.get(i)[0] && batchId <= runs.get(i)[1])
            {
                return true;
            }
        }
        return false;
    }

    /**
     * Moves the head of a ring over records already released, up to the lowest pin: called
     * when a reader drops its pin, so that a commit held back by the pin takes effect.
     *
     * @param data a handle on the ring.
     */
    public static void advanceHead(final RingRegistry.Handle data)
    {
        synchronized (data.lock())
        {
            try (DataRingScanner scanner = new DataRingScanner(data.ring()))
            {
                scanner.advanceHead(data.lowestPin());
            }
        }
    }
}
