package dev.pubsubshm.spark;

import java.nio.file.Path;
import java.util.HashMap;
import java.util.Map;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class SourceOptionsTest
{
    private static final Map<String, String> ENV = Map.of("PUBSUB_SHM_DIR", "/dev/shm/custom-root");

    private static SourceOptions parse(final String... kv)
    {
        final Map<String, String> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2)
        {
            m.put(kv[i], kv[i + 1]);
        }
        return SourceOptions.parse(m, 4, ENV);
    }

    private static void assertFails(final String expected, final String... kv)
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> parse(kv));
        assertTrue(ex.getMessage().contains(expected), "want \"" + expected + "\" in: " + ex.getMessage());
    }

    @Test
    void defaults()
    {
        final SourceOptions o = parse("projectId", "my-proj", "subscriptionId", "orders-sub");
        assertEquals("projects/my-proj/subscriptions/orders-sub", o.subscriptionName());
        assertEquals("/dev/shm/custom-root", o.ringRoot(), "PUBSUB_SHM_DIR, as pullerd");
        assertEquals(Path.of("/dev/shm/custom-root/my-proj.orders-sub"), o.ringSetDir());
        assertEquals(8, o.numPartitions(), "2 x total cores");
        assertFalse(o.numPartitionsGiven());
        assertEquals(0, o.maxRecordsPerTrigger());
        assertEquals(0, o.maxBytesPerTrigger());
        assertEquals(SourceOptions.DEFAULT_PULLERD_TIMEOUT_MS, o.pullerdTimeoutMs());
        assertTrue(o.failOnDataLoss());
        assertTrue(o.validateBatches());
        assertEquals(0, o.streamBudget(), "2 x total executor cores, dealt out by the driver");
        assertTrue(SourceOptions.defaultRingRoot(Map.of()).matches("/dev/shm/pubsub-shm-[0-9]+"));
    }

    @Test
    void everyOptionCaseInsensitively()
    {
        final SourceOptions o = parse("SUBSCRIPTIONID", "projects/p1/subscriptions/s-1", "ringroot", "/tmp/r",
            "numPartitions", "8", "maxrecordspertrigger", "1000", "maxBytesPerTrigger", "64m", "pullerdTimeoutMs", "0",
            "failOnDataLoss", "FALSE", "validateBatches", "false", "STREAMBUDGET", "12");
        assertEquals("p1", o.projectId());
        assertEquals("s-1", o.subscriptionId());
        assertEquals("/tmp/r", o.ringRoot());
        assertEquals(8, o.numPartitions());
        assertTrue(o.numPartitionsGiven());
        assertEquals(1000, o.maxRecordsPerTrigger());
        assertEquals(64L << 20, o.maxBytesPerTrigger());
        assertEquals(0, o.pullerdTimeoutMs());
        assertFalse(o.failOnDataLoss());
        assertFalse(o.validateBatches());
        assertEquals(12, o.streamBudget());
    }

    @Test
    void errorsNameTheOptionAndTheValue()
    {
        assertFails("unknown options \"topic\", \"maxRecord\"; the known options are projectId, subscriptionId, ringRoot, " +
            "numPartitions, maxRecordsPerTrigger, maxBytesPerTrigger, pullerdTimeoutMs, failOnDataLoss, streamBudget, validateBatches",
            "projectId", "p", "subscriptionId", "s-1", "topic", "t", "maxRecord", "1");
        assertFails("option subscriptionId is required", "projectId", "p");
        assertFails("option projectId is required with subscriptionId=\"sub\"", "subscriptionId", "sub");
        assertFails("projectId=\"other\" contradicts subscriptionId=\"projects/p/subscriptions/sub\"",
            "projectId", "other", "subscriptionId", "projects/p/subscriptions/sub");
        assertFails("subscriptionId=\"projects/p/topics/t\": want a subscription ID or projects/<project>/subscriptions/<id>",
            "subscriptionId", "projects/p/topics/t");
        assertFails("subscriptionId=\"1sub\" is not a Pub/Sub subscription ID", "projectId", "p", "subscriptionId", "1sub");
        assertFails("subscriptionId=\"goog-sub\" is not a Pub/Sub subscription ID", "projectId", "p", "subscriptionId", "goog-sub");
        assertFails("projectId=\"P\" is not a Pub/Sub project ID", "projectId", "P", "subscriptionId", "sub");
        assertFails("ringRoot=\"r\" must be an absolute directory path", "projectId", "p", "subscriptionId", "sub", "ringRoot", "r");
        assertFails("numPartitions=9 exceeds 2 x the total executor cores (2 x 4 = 8)",
            "projectId", "p", "subscriptionId", "sub", "numPartitions", "9");
        assertFails("numPartitions=0 must be in [1,", "projectId", "p", "subscriptionId", "sub", "numPartitions", "0");
        assertFails("maxRecordsPerTrigger=\"1e3\" is not an integer", "projectId", "p", "subscriptionId", "sub",
            "maxRecordsPerTrigger", "1e3");
        assertFails("maxBytesPerTrigger=\"0k\" must be at least 1 byte", "projectId", "p", "subscriptionId", "sub",
            "maxBytesPerTrigger", "0k");
        assertFails("maxBytesPerTrigger=\"big\" is not a size", "projectId", "p", "subscriptionId", "sub",
            "maxBytesPerTrigger", "big");
        assertFails("pullerdTimeoutMs=-1 must be in [0,", "projectId", "p", "subscriptionId", "sub", "pullerdTimeoutMs", "-1");
        assertFails("streamBudget=0 must be in [1, 10000]", "projectId", "p", "subscriptionId", "sub", "streamBudget", "0");
        assertFails("validateBatches=\"yes\" must be true or false", "projectId", "p", "subscriptionId", "sub",
            "validateBatches", "yes");
    }
}
