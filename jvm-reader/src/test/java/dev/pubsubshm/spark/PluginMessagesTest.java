package dev.pubsubshm.spark;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.File;
import java.util.List;

import org.junit.jupiter.api.Test;

/** The plugin's wire format: byte arrays in, the connector's messages out, nothing else accepted. */
class PluginMessagesTest
{
    @Test
    void messagesRoundTrip()
    {
        final RingView v = new RingView("h", "/r/p.s/data-0.ring", 0, 42, 1, 2, 20, 2000, 5, 1,
            new int[] {10, 10}, new long[] {1000, 1000}, new long[] {0, 4096});
        final PluginMessages.Report report = new PluginMessages.Report("h", "3",
            List.of(new PluginMessages.SetReport("/r/p.s", List.of(v))));
        final Object back = PluginMessages.decode(PluginMessages.encode(report));
        final PluginMessages.Report r = (PluginMessages.Report)back;
        assertEquals("3", r.executorId());
        assertEquals(2, r.sets().get(0).views().get(0).lastBatchId());
        assertEquals(4096, r.sets().get(0).views().get(0).position(2));
        final PluginMessages.Reply reply = new PluginMessages.Reply(List.of(new PluginMessages.SetMarks("/r/p.s", "p", "s",
            0, 2, List.of(new PluginMessages.RingMark(42, 1, 2)))));
        assertEquals(reply, PluginMessages.decode(PluginMessages.encode(reply)));
        assertEquals(Boolean.TRUE, PluginMessages.decode(PluginMessages.encode(Boolean.TRUE)));
    }

    @Test
    void otherClassesAndGarbageAreRefused()
    {
        final IllegalArgumentException foreign = assertThrows(IllegalArgumentException.class,
            () -> PluginMessages.decode(PluginMessages.encode(new File("/etc/passwd"))));
        assertTrue(foreign.getMessage().contains("is not one of the plugin's messages"), foreign.getMessage());
        final IllegalArgumentException garbage = assertThrows(IllegalArgumentException.class,
            () -> PluginMessages.decode(new byte[] {1, 2, 3}));
        assertTrue(garbage.getMessage().contains("a message of 3 bytes"), garbage.getMessage());
    }
}
