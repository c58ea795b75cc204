package dev.pubsubshm.spark;

import java.util.ArrayList;
import java.util.List;
import java.util.TreeMap;

import org.apache.spark.sql.connector.read.InputPartition;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;

/** numPartitions caps the Spark partitions of a micro-batch; a partition never spans hosts. */
class InputPartitionGroupingTest
{
    private static List<RingInputPartition.Slice> slices(final int n)
    {
        final List<RingInputPartition.Slice> out = new ArrayList<>();
        for (int p = 0; p < n; p++)
        {
            out.add(new RingInputPartition.Slice("/r/data-" + p + ".ring", p, 100 + p, 0, 5, -1));
        }
        return out;
    }

    @Test
    void oneRingPerPartitionUpToTheCap()
    {
        final TreeMap<String, List<RingInputPartition.Slice>> byHost = new TreeMap<>();
        byHost.put("a", slices(3));
        final InputPartition[] parts = PubSubShmMicroBatchStream.group(byHost, 4);
        assertEquals(3, parts.length);
        assertArrayEquals(new String[] {"a"}, parts[0].preferredLocations());
        assertEquals(1, ((RingInputPartition)parts[2]).slices().size());
    }

    @Test
    void aboveTheCapRingsAreGroupedPerHostInProportion()
    {
        final TreeMap<String, List<RingInputPartition.Slice>> byHost = new TreeMap<>();
        byHost.put("a", slices(6));
        byHost.put("b", slices(2));
        final InputPartition[] parts = PubSubShmMicroBatchStream.group(byHost, 4);
        assertEquals(4, parts.length);
        int onA = 0;
        int slicesOnA = 0;
        int slicesOnB = 0;
        for (final InputPartition p : parts)
        {
            final RingInputPartition r = (RingInputPartition)p;
            if (r.host().equals("a"))
            {
                onA++;
                slicesOnA += r.slices().size();
            }
            else
            {
                slicesOnB += r.slices().size();
            }
        }
        assertEquals(3, onA, "host a has 3/4 of the rings: 3 of the 4 partitions");
        assertEquals(6, slicesOnA);
        assertEquals(2, slicesOnB, "every ring is read, none twice");
    }
}
