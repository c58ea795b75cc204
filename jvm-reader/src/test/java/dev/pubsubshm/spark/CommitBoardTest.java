package dev.pubsubshm.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.stream.Collectors;

import org.junit.jupiter.api.Test;

/**
 * {@link CommitBoard}'s cluster bookkeeping: the stream budget dealt out per host, executors
 * leaving, abandoned ring incarnations of hosts that left, and several executors on one host.
 */
class CommitBoardTest
{
    private static final Path DIR = Path.of("/dev/shm/pubsub-shm-0/p.s");

    private static RingView view(final String host, final int partition, final long instance, final long first,
        final long last)
    {
        final int n = (int)(last - first + 1);
        final int[] rows = new int[n];
        final long[] bytes = new long[n];
        final long[] positions = new long[n];
        for (int i = 0; i < n; i++)
        {
            rows[i] = 10;
            bytes[i] = 1000;
            positions[i] = 4096L * i;
        }
        return new RingView(host, DIR.resolve("data-" + partition + ".ring").toString(), partition, instance, first, last,
            10L * n, 1000L * n, 1, first, rows, bytes, positions);
    }

    private static PluginMessages.Report report(final String host, final String executor, final RingView... views)
    {
        return new PluginMessages.Report(host, executor, List.of(new PluginMessages.SetReport(DIR.toString(),
            List.of(views))));
    }

    private static Map<Long, Long> committedMarks(final PluginMessages.Reply reply)
    {
        return reply.sets().get(0).rings().stream()
            .collect(Collectors.toMap(PluginMessages.RingMark::instanceId, PluginMessages.RingMark::committed));
    }

    @Test
    void streamBudgetIsDealtOutByExecutorCores()
    {
        final CommitBoard board = new CommitBoard();
        assertEquals(0, board.streamShare("h1", 0), "no executors known: pullerd keeps its own number");
        board.executorAdded("1", "h1", 1);
        board.executorAdded("2", "h2", 1);
        assertEquals(2, board.streamShare("h1", 0), "default budget 2 x 2 cores, half of it");
        assertEquals(2, board.streamShare("h2", 0));
        assertEquals(0, board.streamShare("h3", 0), "a host without executors gets no share");
        assertEquals(1, board.streamShare("h1", 3), "3 streams over two 1-core hosts: 1 each, rounded down");
        assertEquals(1, board.streamShare("h1", 1), "at least one per host");
        board.executorAdded("3", "h1", 2);
        assertEquals(6, board.streamShare("h1", 0), "h1 has 3 of 4 cores: 3/4 of 8");
        assertEquals(2, board.streamShare("h2", 0));
        assertTrue(board.streamShare("h1", 0) + board.streamShare("h2", 0) <= 8, "shares stay within the budget");
        board.executorRemoved("3");
        board.executorRemoved("2");
        assertEquals(2, board.streamShare("h1", 0), "the budget follows the cores that are left");
    }

    @Test
    void theReplyCarriesTheReportingHostsShare()
    {
        final CommitBoard board = new CommitBoard();
        board.register("q", DIR, "p", "s", 0, 6);
        board.executorAdded("1", "h1", 1);
        board.executorAdded("2", "h2", 2);
        assertEquals(2, board.onReport(report("h1", "1")).sets().get(0).streams());
        assertEquals(4, board.onReport(report("h2", "2")).sets().get(0).streams());
    }

    @Test
    void aHostThatLeftIsAbandonedAndNeverCommitted()
    {
        final CommitBoard board = new CommitBoard();
        board.register("q", DIR, "p", "s", 0, 0);
        board.driverHost("driver");
        board.executorAdded("1", "h1", 1);
        board.executorAdded("2", "h2", 1);
        board.onReport(report("h1", "1", view("h1", 0, 11, 1, 5)));
        board.onReport(report("h2", "2", view("h2", 0, 22, 1, 7)));
        assertEquals(2, board.reportedViews(DIR).size());

        assertFalse(board.abandonIfHostGone("h2", DIR, 22), "h2 is there: the task must fail and be retried, not skip");
        assertFalse(board.abandonIfHostGone("driver", DIR, 33), "the driver's host never counts as gone");

        board.executorRemoved("2");
        assertFalse(board.hostAlive("h2"));
        assertTrue(board.hostAlive("h1"));
        assertEquals(List.of(11L), board.reportedViews(DIR).stream().map(RingView::instanceId).toList(),
            "the removed executor's rings are no longer planned");
        assertTrue(board.abandonIfHostGone("h2", DIR, 22), "h2 left: skip its slice");
        assertTrue(board.abandoned(DIR, 22));

        board.committed(DIR, new RingOffset(List.of(new RingOffset.Entry("h1", 0, 11, 5, RingOffset.NO_BASE),
            new RingOffset.Entry("h2", 0, 22, 7, RingOffset.NO_BASE))));
        // Even if an executor on h2 comes back with the same ring incarnation, it gets no watermark for it.
        board.executorAdded("4", "h2", 1);
        final Map<Long, Long> marks = committedMarks(board.onReport(report("h2", "4", view("h2", 0, 22, 1, 9))));
        assertEquals(Map.of(11L, 5L), marks, "only the incarnation that was not abandoned is committed");
        assertEquals(List.of(11L), board.reportedViews(DIR).stream().map(RingView::instanceId).toList(),
            "an abandoned incarnation is not planned again");
    }

    @Test
    void executorsSharingAHostReportOneRingOnce()
    {
        final CommitBoard board = new CommitBoard();
        board.register("q", DIR, "p", "s", 0, 0);
        board.onReport(report("h1", "1", view("h1", 0, 11, 1, 5)));
        board.onReport(report("h1", "2", view("h1", 0, 11, 1, 6)));
        final List<RingView> views = board.reportedViews(DIR);
        assertEquals(1, views.size(), "one ring, reported by both executors of its host");
        assertEquals(6, views.get(0).lastBatchId(), "the freshest view wins");
        assertTrue(board.hostAlive("h1"), "without the listener, a fresh report means the host is there");
        assertFalse(board.hostAlive("h9"));
    }
}
