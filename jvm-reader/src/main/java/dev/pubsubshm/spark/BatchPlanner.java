package dev.pubsubshm.spark;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Comparator;
import java.util.HashSet;
import java.util.List;
import java.util.Set;

import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Decides the end offset of the next micro-batch from a start offset and what the rings
 * hold (pure: no I/O, unit-tested on its own).
 *
 * <ul>
 * <li>A ring in the start offset continues after its batch; a ring not in it (new, or empty
 *     until now) starts just before its oldest batch, and its entry records that as
 *     {@code base}.</li>
 * <li>Admission limits ({@code maxRecordsPerTrigger}, {@code maxBytesPerTrigger}) count whole
 *     ring batches, taken round-robin over the rings so that every ring progresses; a
 *     micro-batch takes at least one batch, even one larger than the limit.</li>
 * <li>With an {@code AvailableNow} target, no ring goes past the target's batch, and rings
 *     the target does not know are not read.</li>
 * <li>Entries of the start offset whose ring is not seen are carried over when their host
 *     reported nothing (it may come back), and dropped when their host reports rings but not
 *     that incarnation (pullerd recreated the ring).</li>
 * </ul>
 */
final class BatchPlanner
{
    private static final Logger LOG = LoggerFactory.getLogger(BatchPlanner.class);

    private BatchPlanner()
    {
    }

    /** The outcome: the end offset, how much it admits, and what was available. */
    record Plan(RingOffset end, long batches, long rows, long bytes, RingOffset available)
    {
    }

    private static final class Cursor
    {
        final RingView view;
        final RingOffset.Entry start;
        final long from;
        final long last;
        long next;
        boolean blocked;

        Cursor(final RingView view, final RingOffset.Entry start, final long from, final long last)
        {
            this.view = view;
            this.start = start;
            this.from = from;
            this.last = last;
            this.next = from + 1;
        }
    }

    /**
     * Plans the next end offset.
     *
     * @param start          the start offset (committed by Spark).
     * @param views          the rings as they are now (local and reported).
     * @param maxRows        rows per micro-batch at most, 0 for no limit.
     * @param maxBytes       Arrow bytes per micro-batch at most, 0 for no limit.
     * @param target         the {@code AvailableNow} target, or {@code null}.
     * @param failOnDataLoss throw when a ring's head is past the start offset (its batches
     *                       were released by another reader); else skip them with a warning.
     * @return the plan; {@code end} is {@code start} itself when nothing new is admitted.
     * @throws IllegalStateException on a gap with {@code failOnDataLoss}.
     */
    static Plan plan(
        final RingOffset start,
        final Collection<RingView> views,
        final long maxRows,
        final long maxBytes,
        final RingOffset target,
        final boolean failOnDataLoss)
    {
        final List<RingView> sorted = new ArrayList<>(views);
        sorted.sort(Comparator.comparing(RingView::host).thenComparingInt(RingView::partition)
            .thenComparing(v -> Long.toUnsignedString(v.instanceId())));
        final List<Cursor> cursors = new ArrayList<>();
        final Set<Long> seen = new HashSet<>();
        final Set<String> hosts = new HashSet<>();
        for (final RingView v : sorted)
        {
            if (!seen.add(v.instanceId()))
            {
                continue; // the same incarnation reported twice (local scan and a report)
            }
            hosts.add(v.host());
            final RingOffset.Entry e = start.get(v.instanceId());
            long from;
            if (e != null)
            {
                from = e.batch();
            }
            else if (v.firstBatchId() > 0)
            {
                from = v.firstBatchId() - 1;
            }
            else
            {
                continue; // an empty ring nobody has read: nothing to start from yet
            }
            if (v.firstBatchId() > 0 && from < v.firstBatchId() - 1)
            {
                final String what = "pubsub-shm: batches " + (from + 1) + ".." + (v.firstBatchId() - 1) + " of ring " +
                    v.path() + " on " + v.host() + " (instance " + RingRegistry.hex(v.instanceId()) + ") were released " +
                    "before this query read them: another reader (a second query on the same ring set?) committed them";
                if (failOnDataLoss)
                {
                    throw new IllegalStateException(what + ". Run one query per subscription, or set " +
                        SourceOptions.FAIL_ON_DATA_LOSS + "=false to continue from batch " + v.firstBatchId());
                }
                LOG.warn("{}; continuing from batch {} ({}=false)", what, v.firstBatchId(), SourceOptions.FAIL_ON_DATA_LOSS);
                from = v.firstBatchId() - 1;
            }
            long last = v.lastBatchId();
            if (target != null)
            {
                final RingOffset.Entry t = target.get(v.instanceId());
                last = t == null ? from : Math.min(last, t.batch());
            }
            cursors.add(new Cursor(v, e, from, Math.max(from, last)));
        }

        long batches = 0;
        long rows = 0;
        long bytes = 0;
        boolean progress = true;
        while (progress)
        {
            progress = false;
            for (final Cursor c : cursors)
            {
                if (c.blocked || c.next > c.last || !c.view.hasDetail(c.next))
                {
                    continue;
                }
                final long r = c.view.rows(c.next);
                final long b = c.view.bytes(c.next);
                if (batches > 0 && ((maxRows > 0 && rows + r > maxRows) || (maxBytes > 0 && bytes + b > maxBytes)))
                {
                    c.blocked = true;
                    continue;
                }
                c.next++;
                batches++;
                rows += r;
                bytes += b;
                progress = true;
            }
        }

        final List<RingOffset.Entry> end = new ArrayList<>();
        final List<RingOffset.Entry> available = new ArrayList<>();
        for (final Cursor c : cursors)
        {
            final RingView v = c.view;
            final long admitted = c.next - 1;
            if (c.start != null)
            {
                end.add(new RingOffset.Entry(v.host(), v.partition(), v.instanceId(), admitted, RingOffset.NO_BASE));
            }
            else if (admitted > c.from)
            {
                end.add(new RingOffset.Entry(v.host(), v.partition(), v.instanceId(), admitted, c.from));
            }
            final long avail = Math.max(c.from, v.lastBatchId());
            available.add(new RingOffset.Entry(v.host(), v.partition(), v.instanceId(), avail,
                c.start == null ? c.from : RingOffset.NO_BASE));
        }
        for (final RingOffset.Entry e : start.entries())
        {
            if (!seen.contains(e.instanceId()) && !hosts.contains(e.host()))
            {
                end.add(e.withoutBase());
                available.add(e.withoutBase());
            }
        }
        if (batches == 0)
        {
            return new Plan(start, 0, 0, 0, new RingOffset(available));
        }
        return new Plan(new RingOffset(end), batches, rows, bytes, new RingOffset(available));
    }
}
