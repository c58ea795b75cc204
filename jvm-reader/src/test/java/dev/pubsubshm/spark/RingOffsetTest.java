package dev.pubsubshm.spark;

import java.util.List;

import org.apache.spark.sql.execution.streaming.runtime.SerializedOffset;
import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

class RingOffsetTest
{
    private static final long HIGH = 0xF00DCAFE12345678L; // negative as a long: unsigned handling

    @Test
    void jsonIsCanonicalAndRoundTrips()
    {
        final RingOffset.Entry a = new RingOffset.Entry("h1", 1, 7, 42, RingOffset.NO_BASE);
        final RingOffset.Entry b = new RingOffset.Entry("h1", 0, HIGH, 3, 1);
        final RingOffset.Entry c = new RingOffset.Entry("h0", 5, 9, 0, RingOffset.NO_BASE);
        final RingOffset one = new RingOffset(List.of(a, b, c));
        final RingOffset two = new RingOffset(List.of(c, a, b));
        assertEquals(one.json(), two.json(), "equal offsets have equal JSON whatever the order");
        assertEquals(one, two);
        assertEquals("{\"v\":1,\"rings\":[" +
            "{\"host\":\"h0\",\"partition\":5,\"instance\":\"0000000000000009\",\"batch\":0}," +
            "{\"host\":\"h1\",\"partition\":0,\"instance\":\"f00dcafe12345678\",\"batch\":3,\"base\":1}," +
            "{\"host\":\"h1\",\"partition\":1,\"instance\":\"0000000000000007\",\"batch\":42}]}", one.json());
        final RingOffset back = RingOffset.fromJson(one.json());
        assertEquals(one.entries(), back.entries());
        assertEquals(b, back.get(HIGH));
        assertNull(back.get(12345));
        assertEquals(one, RingOffset.of(new SerializedOffset(one.json())), "offsets read back from the offset log");
        assertEquals("{\"v\":1,\"rings\":[]}", RingOffset.empty().json());
    }

    @Test
    void badOffsetsAreRefusedWithTheReason()
    {
        assertThrows(IllegalArgumentException.class, () -> new RingOffset(List.of(
            new RingOffset.Entry("h", 0, 7, 1, RingOffset.NO_BASE), new RingOffset.Entry("h", 1, 7, 1, RingOffset.NO_BASE))));
        assertThrows(IllegalArgumentException.class, () -> new RingOffset.Entry("h", 0, 0, 1, RingOffset.NO_BASE),
            "instance 0 is never valid");
        assertThrows(IllegalArgumentException.class, () -> new RingOffset.Entry("h", 0, 1, 1, 2), "base after batch");
        final IllegalArgumentException notOurs = assertThrows(IllegalArgumentException.class,
            () -> RingOffset.fromJson("{\"topic\":{\"0\":12}}"));
        assertTrue(notOurs.getMessage().contains("is not a version 1 pubsub-shm offset"), notOurs.getMessage());
        final IllegalArgumentException badId = assertThrows(IllegalArgumentException.class,
            () -> RingOffset.fromJson("{\"v\":1,\"rings\":[{\"host\":\"h\",\"partition\":0,\"instance\":\"xyz\",\"batch\":1}]}"));
        assertTrue(badId.getMessage().contains("instance \"xyz\""), badId.getMessage());
        assertThrows(IllegalArgumentException.class, () -> RingOffset.fromJson("not json"));
    }
}
