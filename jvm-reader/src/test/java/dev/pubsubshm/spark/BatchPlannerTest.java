package dev.pubsubshm.spark;

import java.util.Arrays;
import java.util.List;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class BatchPlannerTest
{
    /** A ring holding batches first..last of {@code rows} rows and {@code rows * 100} bytes each. */
    private static RingView ring(final String host, final int partition, final long instance, final long first,
        final long last, final int rows)
    {
        final int n = first == 0 ? 0 : (int)(last - first + 1);
        final int[] r = new int[n];
        final long[] b = new long[n];
        final long[] p = new long[n];
        Arrays.fill(r, rows);
        Arrays.fill(b, rows * 100L);
        for (int i = 0; i < n; i++)
        {
            p[i] = 4096L * (first + i);
        }
        return new RingView(host, "/r/data-" + partition + ".ring", partition, instance, first, first == 0 ? 0 : last,
            (long)n * rows, (long)n * rows * 100, 1, first, r, b, p);
    }

    private static RingOffset.Entry e(final String host, final int partition, final long instance, final long batch,
        final long base)
    {
        return new RingOffset.Entry(host, partition, instance, batch, base);
    }

    @Test
    void newRingsStartAtTheirHeadAndRecordTheBase()
    {
        final BatchPlanner.Plan plan = BatchPlanner.plan(RingOffset.empty(),
            List.of(ring("h", 0, 11, 5, 9, 10), ring("h", 1, 22, 0, 0, 0)), 0, 0, null, true);
        assertEquals(new RingOffset(List.of(e("h", 0, 11, 9, 4))), plan.end(), "an empty ring is not started");
        assertEquals(5, plan.batches());
        assertEquals(50, plan.rows());
        assertEquals(5000, plan.bytes());
    }

    @Test
    void ringsContinueAfterTheStartAndNothingNewReturnsTheStartItself()
    {
        final RingOffset start = new RingOffset(List.of(e("h", 0, 11, 7, 4)));
        final BatchPlanner.Plan plan = BatchPlanner.plan(start, List.of(ring("h", 0, 11, 5, 9, 10)), 0, 0, null, true);
        assertEquals(new RingOffset(List.of(e("h", 0, 11, 9, RingOffset.NO_BASE))), plan.end());
        final RingOffset done = plan.end();
        assertSame(done, BatchPlanner.plan(done, List.of(ring("h", 0, 11, 5, 9, 10)), 0, 0, null, true).end());
    }

    @Test
    void limitsCountWholeBatchesRoundRobinAndAlwaysAdmitOne()
    {
        final List<RingView> rings = List.of(ring("h", 0, 11, 1, 10, 100), ring("h", 1, 22, 1, 10, 100));
        BatchPlanner.Plan plan = BatchPlanner.plan(RingOffset.empty(), rings, 450, 0, null, true);
        assertEquals(400, plan.rows(), "4 batches of 100 fit in 450 rows");
        assertEquals(new RingOffset(List.of(e("h", 0, 11, 2, 0), e("h", 1, 22, 2, 0))), plan.end(), "both rings progress");
        plan = BatchPlanner.plan(RingOffset.empty(), rings, 0, 25_000, null, true);
        assertEquals(2, plan.batches(), "10 000 bytes per batch: two fit in 25 000 bytes");
        plan = BatchPlanner.plan(RingOffset.empty(), rings, 50, 50, null, true);
        assertEquals(1, plan.batches(), "a batch larger than the limit still goes, alone");
        plan = BatchPlanner.plan(RingOffset.empty(), rings, 1000, 70_000, null, true);
        assertEquals(7, plan.batches(), "the tighter of the two limits holds");
    }

    @Test
    void availableNowStopsAtItsTarget()
    {
        final RingOffset target = new RingOffset(List.of(e("h", 0, 11, 6, RingOffset.NO_BASE)));
        final List<RingView> rings = List.of(ring("h", 0, 11, 1, 10, 1), ring("h", 1, 22, 1, 10, 1));
        final BatchPlanner.Plan plan = BatchPlanner.plan(RingOffset.empty(), rings, 0, 0, target, true);
        assertEquals(new RingOffset(List.of(e("h", 0, 11, 6, 0))), plan.end(), "ring 22 is not in the target");
        assertSame(plan.end(), BatchPlanner.plan(plan.end(), rings, 0, 0, target, true).end(), "the target is reached");
    }

    @Test
    void unseenRingsAreCarriedOverOrDroppedByTheirHost()
    {
        final RingOffset start = new RingOffset(List.of(e("gone-host", 0, 33, 4, RingOffset.NO_BASE),
            e("h", 1, 44, 8, RingOffset.NO_BASE)));
        final BatchPlanner.Plan plan = BatchPlanner.plan(start, List.of(ring("h", 0, 11, 1, 2, 1)), 0, 0, null, true);
        assertEquals(new RingOffset(List.of(e("gone-host", 0, 33, 4, RingOffset.NO_BASE), e("h", 0, 11, 2, 0))), plan.end(),
            "a host that reports nothing may come back; a host that reports other rings recreated ring 44");
    }

    @Test
    void batchesReleasedBehindTheQueryAreDataLoss()
    {
        final RingOffset start = new RingOffset(List.of(e("h", 0, 11, 2, RingOffset.NO_BASE)));
        final List<RingView> rings = List.of(ring("h", 0, 11, 6, 8, 1));
        final IllegalStateException ex = assertThrows(IllegalStateException.class,
            () -> BatchPlanner.plan(start, rings, 0, 0, null, true));
        assertTrue(ex.getMessage().contains("batches 3..5 of ring /r/data-0.ring on h"), ex.getMessage());
        assertTrue(ex.getMessage().contains("failOnDataLoss=false"), ex.getMessage());
        final BatchPlanner.Plan plan = BatchPlanner.plan(start, rings, 0, 0, null, false);
        assertEquals(new RingOffset(List.of(e("h", 0, 11, 8, RingOffset.NO_BASE))), plan.end());
        assertEquals(3, plan.batches());
    }

    @Test
    void theSameIncarnationSeenTwiceCountsOnce()
    {
        final RingView v = ring("h", 0, 11, 1, 3, 1);
        final BatchPlanner.Plan plan = BatchPlanner.plan(RingOffset.empty(), List.of(v, v), 0, 0, null, true);
        assertEquals(3, plan.batches());
    }

    @Test
    void reportsWithPartialDetailPlanOnlyWhatTheyDescribe()
    {
        final RingView full = ring("h", 0, 11, 1, 10, 1);
        final RingView trimmed = full.detailAfter(4, 3); // detail 5..7
        assertEquals(7, trimmed.lastBatchId());
        final RingOffset start = new RingOffset(List.of(e("h", 0, 11, 4, RingOffset.NO_BASE)));
        assertEquals(3, BatchPlanner.plan(start, List.of(trimmed), 0, 0, null, true).batches());
        final RingOffset behind = new RingOffset(List.of(e("h", 0, 11, 2, RingOffset.NO_BASE)));
        assertSame(behind, BatchPlanner.plan(behind, List.of(trimmed), 0, 0, null, true).end(),
            "no detail for batch 3 yet: wait for the next report");
    }
}
