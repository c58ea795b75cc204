package dev.pubsubshm.spark.sink;

import java.util.HashMap;
import java.util.Map;

import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.StructType;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** Option and column validation: every error names the option or column, the value and the rule. */
class SinkOptionsTest
{
    private static Map<String, String> opts(final String... kv)
    {
        final Map<String, String> m = new HashMap<>();
        for (int i = 0; i < kv.length; i += 2)
        {
            m.put(kv[i], kv[i + 1]);
        }
        return m;
    }

    private static void refused(final Map<String, String> o, final String... parts)
    {
        final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> SinkOptions.parse(o, Map.of()));
        for (final String p : parts)
        {
            assertTrue(ex.getMessage().contains(p), "\"" + ex.getMessage() + "\" lacks \"" + p + "\"");
        }
    }

    @Test
    void defaultsAndFullNames()
    {
        final SinkOptions o = SinkOptions.parse(opts("TOPICID", "projects/my-proj/topics/orders", "ringRoot", "/dev/shm/x"),
            Map.of());
        assertEquals("my-proj", o.projectId());
        assertEquals("orders", o.topicId());
        assertEquals("projects/my-proj/topics/orders", o.topicName());
        assertEquals(SinkOptions.DEFAULT_BATCH_ROWS, o.batchRows());
        assertEquals(1 << 20, o.batchBytes());
        assertEquals(5, o.lingerMs());
        assertEquals(0, o.ringCapacity());
        assertEquals("/dev/shm/x/control.sock", o.controlSocket().toString());
        final SinkOptions p = SinkOptions.parse(opts("projectId", "p", "topicId", "t1x", "batchBytes", "4m", "ringCapacity",
            "64m", "publishMaxBytes", "9000000", "publishLingerMs", "20", "checkpointLocation", "/tmp/c"),
            Map.of("PUBSUB_SHM_DIR", "/dev/shm/env-root"));
        assertEquals(4 << 20, p.batchBytes());
        assertEquals(64 << 20, p.ringCapacity());
        assertEquals(9_000_000, p.publishMaxBytes());
        assertEquals(20, p.publishLingerMs());
        assertEquals("/dev/shm/env-root", p.ringRoot());
        assertTrue(SinkOptions.isSink(opts("TopicId", "x")));
        assertFalse(SinkOptions.isSink(opts("subscriptionId", "x")));
    }

    @Test
    void badOptions()
    {
        refused(opts("projectId", "p"), "topicId is required");
        refused(opts("topicId", "t12"), "projectId is required");
        refused(opts("projectId", "p", "topicId", "t12", "topicID2", "x"), "unknown option \"topicID2\"", "projectId, topicId");
        refused(opts("projectId", "p", "topicId", "t12", "subscriptionId", "s"), "subscriptionId is for reading");
        refused(opts("projectId", "P!", "topicId", "t12"), "projectId=\"P!\"");
        refused(opts("projectId", "p", "topicId", "goog-x"), "topicId=\"goog-x\"");
        refused(opts("projectId", "q", "topicId", "projects/p/topics/t12"), "contradicts");
        refused(opts("projectId", "p", "topicId", "projects/p/subscriptions/t12"), "projects/<project>/topics/<id>");
        refused(opts("projectId", "p", "topicId", "t12", "ringRoot", "rel/dir"), "ringRoot=\"rel/dir\"", "absolute");
        refused(opts("projectId", "p", "topicId", "t12", "batchRows", "0"), "batchRows=0");
        refused(opts("projectId", "p", "topicId", "t12", "batchRows", "many"), "batchRows=\"many\"", "not an integer");
        refused(opts("projectId", "p", "topicId", "t12", "batchBytes", "lots"), "batchBytes=\"lots\"", "not a size");
        refused(opts("projectId", "p", "topicId", "t12", "ringCapacity", "3m"), "ringCapacity=3145728", "power of two");
        refused(opts("projectId", "p", "topicId", "t12", "publishMaxBytes", "11000000"), "publishMaxBytes");
        refused(opts("projectId", "p", "topicId", "t12", "lingerMs", "-1"), "lingerMs=-1");
    }

    @Test
    void inputColumns()
    {
        final InputColumns c = InputColumns.resolve(new StructType().add("ordering_key", DataTypes.StringType)
            .add("DATA", DataTypes.StringType).add("attributes", DataTypes.createMapType(DataTypes.StringType,
                DataTypes.StringType)));
        assertEquals(1, c.data());
        assertEquals(2, c.attributes());
        assertEquals(0, c.orderingKey());
        assertEquals(-1, InputColumns.resolve(new StructType().add("data", DataTypes.BinaryType)).attributes());
        final String[][] bad = {
            {"value", "binary", "column \"value\" (binary)", "takes data (binary or string, required)"},
            {"data", "int", "column \"data\" has type int", "binary or string"},
            {"attributes", "map<string,int>", "column \"attributes\" has type map<string,int>", "MAP<STRING,STRING>"},
            {"ordering_key", "binary", "column \"ordering_key\" has type binary"},
        };
        for (final String[] b : bad)
        {
            StructType s = StructType.fromDDL(b[0] + " " + b[1]);
            if (!b[0].equals("data") && !b[0].equals("value"))
            {
                s = s.add("data", DataTypes.BinaryType);
            }
            final StructType schema = s;
            final IllegalArgumentException ex = assertThrows(IllegalArgumentException.class, () -> InputColumns.resolve(schema));
            for (int i = 2; i < b.length; i++)
            {
                assertTrue(ex.getMessage().contains(b[i]), "\"" + ex.getMessage() + "\" lacks \"" + b[i] + "\"");
            }
        }
        final IllegalArgumentException none = assertThrows(IllegalArgumentException.class,
            () -> InputColumns.resolve(new StructType().add("attributes", DataTypes.createMapType(DataTypes.StringType,
                DataTypes.StringType))));
        assertTrue(none.getMessage().contains("no column \"data\""), none.getMessage());
        final IllegalArgumentException twice = assertThrows(IllegalArgumentException.class,
            () -> InputColumns.resolve(new StructType().add("data", DataTypes.BinaryType).add("Data", DataTypes.BinaryType)));
        assertTrue(twice.getMessage().contains("twice"), twice.getMessage());
    }
}
